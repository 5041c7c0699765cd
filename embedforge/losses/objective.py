"""The training objective of a dataset, in one place: YAML keys -> base loss -> modifiers -> one loss module.

A train stage's objective is its base loss (``loss:``, with typed options: the loss constructor's own
arguments and annotations), the CoSENT options for scored STS datasets (``cosent:``), per-dataset option
overrides (``loss_overrides:``), and three **modifiers**, always applied in this order::

    base loss (InfoNCE | MNRL | SDM | CoSENT | any registered loss)
      -> GradCache       gradcache_mini_batch: 40          (CachedInfoNCELoss / CachedMNRL / GradCacheLoss)
      -> Matryoshka      matryoshka: {dims: [...], weights: [...]}
      -> router aux      router_aux_loss_coef: 0.001       (only on mixture-of-experts backbones)

The path from a YAML dataset entry to its loss object is :func:`build_objective`:

1. the dataset picks the family: ``loss: cosent`` (scored STS pairs) takes ``cosent:``; every other dataset
   takes ``loss:`` (default ``{name: infonce}``) updated with ``loss_overrides[<dataset>]``;
2. the options the *dataset* decides are filled in where the loss has them and the YAML did not set them:
   ``in_batch_negatives`` (the dataset's resolved flag: classification/clustering labels train without),
   ``gather_across_devices`` (true on more than one process), ``teacher_dim`` (the stage's teacher width,
   for losses whose labels are teacher embeddings); a loss that always uses in-batch negatives (MNRL) on a
   dataset that must not is refused;
3. GradCache replaces the base loss by its cached variant (registered with the loss) or wraps it in
   :class:`~embedforge.losses.gradcache.GradCacheLoss` (any loss with ``compute_loss_from_embeddings``);
4. Matryoshka wraps that (:class:`~embedforge.losses.matryoshka.MatryoshkaLoss`; over a cached loss it
   truncates the cached embeddings);
5. on a mixture-of-experts backbone with a non-zero coefficient,
   :class:`~embedforge.losses.router_aux.RouterAuxLoss` wraps everything; GradCache cannot carry that term,
   so the combination is refused.

Every modifier forwards the wrapped loss's options (``loss.gamma`` reads the InfoNCE inside). Everything that
can be checked without the model — loss names, option names and types, the dataset flags, GradCache
support — is checked by :func:`check_objective` when the recipe is loaded.

One spelling per thing: the modifiers are stage keys only. ``loss: {name: matryoshka, ...}`` and
``loss: {name: cached_infonce, ...}`` (the registry spellings of earlier versions) are refused with the key
to use instead.
"""

from __future__ import annotations

import functools
import inspect
import logging
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from embedforge.errors import ConfigError, did_you_mean
from embedforge.utils.config import convert_value

if TYPE_CHECKING:  # torch and sentence-transformers are imported when a loss is built, not to read a config
    from sentence_transformers import SentenceTransformer
    from torch import nn

    from embedforge.models.moe import RouterAuxLossCollector

logger = logging.getLogger(__name__)


@dataclass
class MatryoshkaConfig:
    """Matryoshka representation learning over every loss of the stage (Kusupati et al., 2022)."""

    dims: list[int]  # nested dimensions, e.g. [896, 512, 256, 128, 64] (KaLM-V2) or [2048, 1024, 512, 256] (Seed1.5)
    weights: list[float] | None = None  # loss weight per dimension (None: all 1)

    def __post_init__(self) -> None:
        if not self.dims or any(not isinstance(d, int) or d < 1 for d in self.dims):
            raise ConfigError(f"dims: a non-empty list of positive integers, got {self.dims!r}")
        if self.weights is not None and len(self.weights) != len(self.dims):
            raise ConfigError(f"weights: {len(self.weights)} weights for {len(self.dims)} dims")


@dataclass
class ObjectiveConfig:
    """A train stage's objective: the base loss and its options, and the modifiers (see the module docstring)."""

    loss: dict[str, Any] = field(default_factory=dict)  # base loss for contrastive datasets: {name: infonce, ...}
    cosent: dict[str, Any] = field(default_factory=dict)  # CoSENT options for scored STS datasets (loss: cosent)
    loss_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # dataset -> base-loss option overrides
    gradcache_mini_batch: int | None = None  # GradCache: embed in mini-batches of this size (memory-bound negatives)
    matryoshka: MatryoshkaConfig | None = None  # wrap every loss in Matryoshka
    router_aux_loss_coef: float | None = None  # MoE backbones: router load-balancing weight (None: model config)


class DatasetFacts(Protocol):
    """What the objective reads off a dataset (a resolved ``DatasetConfig`` or a loaded ``DatasetInfo``)."""

    name: str
    kind: str
    loss: str  # infonce | cosent (the resolved family)
    in_batch_negatives: bool  # the resolved flag


@dataclass(frozen=True)
class LossPlan:
    """The base loss a dataset gets and its final options (before the model is known)."""

    name: str  # registered loss name
    options: dict[str, Any]  # constructor options, dataset-decided ones filled in
    teacher_labels: bool  # the loss reads teacher embeddings from the label column


@functools.cache
def constructor_options(cls: type) -> tuple[str, ...]:
    """The keyword options of ``cls(model, ...)``: its constructor's arguments but ``self``/``model``/``**kw``."""
    parameters = inspect.signature(cls.__init__).parameters
    return tuple(
        name
        for name, parameter in parameters.items()
        if name not in ("self", "model")
        and parameter.kind not in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    )


# Registry names of earlier versions that are modifiers now: name -> the stage key to use instead.
_MODIFIER_SPELLINGS = {
    "matryoshka": "write the stage key `matryoshka: {dims: [...], weights: [...]}` and name the base loss here",
    "cached_infonce": "write the stage key `gradcache_mini_batch: N` and `name: infonce` here",
    "cached_mnrl": "write the stage key `gradcache_mini_batch: N` and `name: mnrl` here",
}


def plan_loss(
    dataset: DatasetFacts, config: ObjectiveConfig, world_size: int = 1, teacher_dim: int | None = None
) -> LossPlan:
    """Steps 1-2 of the module docstring: the base loss name and options for ``dataset``.

    Raises:
        ConfigError: an unknown loss or option, an option of the wrong type, a modifier given as a loss name,
            a dataset flag the loss cannot honour, or a loss the stage's modifiers cannot wrap.
    """
    from embedforge.losses.registry import LOSSES

    if dataset.loss == "cosent":  # the dataset's family: scored pairs take the stage's `cosent:` options
        key, parts = "cosent", [("cosent", {"name": "cosent", **config.cosent})]
    else:
        override = f"loss_overrides.{dataset.name}"
        key, parts = "loss", [("loss", config.loss), (override, config.loss_overrides.get(dataset.name, {}))]
    name = "infonce"
    for part_key, part in parts:
        if "name" in part:
            key, name = part_key, part["name"]
    if name in _MODIFIER_SPELLINGS:
        raise ConfigError(f"{key}.name: {name!r} is a modifier, not a base loss: {_MODIFIER_SPELLINGS[name]}")
    if name not in LOSSES:
        raise ConfigError(f"{key}.name: unknown loss {name!r}.{did_you_mean(str(name), LOSSES)}")
    entry = LOSSES[name]
    options: dict[str, Any] = {}
    for part_key, part in parts:
        options.update(check_options(name, {k: v for k, v in part.items() if k != "name"}, part_key))
    accepted = constructor_options(entry.cls)
    if entry.in_batch_negatives == "option":
        options.setdefault("in_batch_negatives", dataset.in_batch_negatives)
    elif entry.in_batch_negatives == "always" and not dataset.in_batch_negatives:
        raise ConfigError(
            f"{key}.name: dataset {dataset.name!r} ({dataset.kind}) trains without in-batch negatives, but loss "
            f"{name!r} always uses them; use loss infonce, or set the dataset's in_batch_negatives: true"
        )
    if world_size > 1 and "gather_across_devices" in accepted:
        options.setdefault("gather_across_devices", True)
    teacher_labels = bool(getattr(entry.cls, "labels_are_teacher_embeddings", False))
    if teacher_labels and teacher_dim is not None:
        options.setdefault("teacher_dim", teacher_dim)
    if config.gradcache_mini_batch is not None and entry.gradcache is None:
        if not callable(getattr(entry.cls, "compute_loss_from_embeddings", None)):
            raise ConfigError(
                f"gradcache_mini_batch: loss {name!r} (dataset {dataset.name!r}) has no "
                "compute_loss_from_embeddings, so GradCache cannot cache its embeddings; remove gradcache_mini_batch "
                "or move the dataset to a stage without it"
            )
    return LossPlan(name, options, teacher_labels)


def check_options(name: str, options: Mapping[str, Any], where: str) -> dict[str, Any]:
    """Option names against loss ``name``'s constructor, values against its annotations (ints become floats).

    Raises:
        ConfigError: naming ``<where>.<option>``, the loss and the valid options or expected type.
    """
    from embedforge.losses.registry import LOSSES

    cls = LOSSES.lookup(name).cls
    valid = constructor_options(cls)
    try:
        hints = typing.get_type_hints(cls.__init__)
    except Exception:  # noqa: BLE001 - a foreign loss whose annotations do not resolve: names are still checked
        hints = {}
    checked = {}
    for option, value in options.items():
        if option not in valid:
            raise ConfigError(f"{where}.{option}: unknown option for loss {name!r}.{did_you_mean(option, valid)}")
        hint = hints.get(option)
        checked[option] = value if hint is None else convert_value(value, hint, f"{where}.{option}")
    return checked


def check_objective(
    datasets: Iterable[DatasetFacts], config: ObjectiveConfig, where: str, *, teacher: bool = False
) -> list[LossPlan]:
    """Load-time check of a stage's objective for its (resolved) datasets; returns each dataset's plan.

    Args:
        datasets: resolved dataset configs (``DatasetConfig.resolved()``).
        config: the stage's objective.
        where: the recipe location for messages (``recipe.yaml: stages.finetune``).
        teacher: whether the stage has a teacher (teacher embeddings in the label column).

    Raises:
        ConfigError: naming ``<where>.<key>`` and the fix.
    """
    datasets = list(datasets)
    names = {d.name for d in datasets}
    for dataset in config.loss_overrides:
        if dataset not in names:
            raise ConfigError(f"{where}.loss_overrides.{dataset}: no dataset of that name in this stage")
    if config.gradcache_mini_batch is not None and config.gradcache_mini_batch < 1:
        raise ConfigError(f"{where}.gradcache_mini_batch: must be >= 1, got {config.gradcache_mini_batch}")
    if config.router_aux_loss_coef is not None and config.router_aux_loss_coef < 0:
        raise ConfigError(f"{where}.router_aux_loss_coef: must be >= 0, got {config.router_aux_loss_coef}")
    plans = []
    for dataset in datasets:
        try:
            plan = plan_loss(dataset, config, teacher_dim=1 if teacher else None)
        except ConfigError as error:
            raise ConfigError(f"{where}.{error}") from None
        if plan.teacher_labels and not teacher:
            raise ConfigError(
                f"{where}.loss.name: loss {plan.name!r} distils a teacher (dataset {dataset.name!r}): set the "
                "stage's `teacher` (a model)"
            )
        if teacher and not plan.teacher_labels:
            raise ConfigError(
                f"{where}.teacher: the teacher's embeddings become every dataset's labels, but dataset "
                f"{dataset.name!r} trains with loss {plan.name!r}, which does not read them; move it to another "
                "stage (or remove the teacher)"
            )
        plans.append(plan)
    return plans


def build_objective(
    dataset: DatasetFacts,
    config: ObjectiveConfig,
    model: SentenceTransformer,
    world_size: int = 1,
    *,
    teacher_dim: int | None = None,
    collector: RouterAuxLossCollector | None = None,
) -> nn.Module:
    """The loss module for one dataset: base loss, then GradCache -> Matryoshka -> router aux.

    Args:
        dataset: the dataset's resolved facts (name, kind, loss family, in-batch flag).
        config: the stage's objective.
        model: the SentenceTransformer being trained.
        world_size: processes training together (> 1: losses that can gather across devices do).
        teacher_dim: width of the teacher embeddings in the labels (stages with a teacher).
        collector: the router-logit collector shared by the stage's losses (MoE backbones; None: one is made
            when the router loss applies).

    Raises:
        ConfigError: see :func:`plan_loss`; Matryoshka dims wider than the model; GradCache on a MoE backbone
            with the router loss on.
    """
    from embedforge.losses.gradcache import GradCacheLoss
    from embedforge.losses.matryoshka import MatryoshkaLoss
    from embedforge.losses.registry import LOSSES, build_loss

    plan = plan_loss(dataset, config, world_size, teacher_dim)
    entry = LOSSES[plan.name]
    if config.gradcache_mini_batch is None:
        loss = build_loss(plan.name, model, plan.options)
    elif entry.gradcache is not None:
        loss = _construct(entry.gradcache, model, {**plan.options, "mini_batch_size": config.gradcache_mini_batch})
    else:
        inner = build_loss(plan.name, model, plan.options)
        loss = _construct(GradCacheLoss, model, {"loss": inner, "mini_batch_size": config.gradcache_mini_batch})
    if config.matryoshka is not None:
        weights = config.matryoshka.weights or [1.0] * len(config.matryoshka.dims)
        loss = _construct(
            MatryoshkaLoss,
            model,
            {"loss": loss, "matryoshka_dims": config.matryoshka.dims, "matryoshka_weights": weights},
        )
    coef = router_aux_coef(model, config)
    if coef:
        loss = _wrap_router_aux(loss, model, coef, collector, dataset.name)
    return loss


def build_objectives(
    datasets: Mapping[str, DatasetFacts],
    config: ObjectiveConfig,
    model: SentenceTransformer,
    world_size: int = 1,
    *,
    teacher_dim: int | None = None,
) -> dict[str, nn.Module]:
    """:func:`build_objective` for every dataset of a stage, the MoE router collector shared among them."""
    collector = None
    if router_aux_coef(model, config):
        from embedforge.models.moe import RouterAuxLossCollector

        collector = RouterAuxLossCollector(model)
    return {
        name: build_objective(dataset, config, model, world_size, teacher_dim=teacher_dim, collector=collector)
        for name, dataset in datasets.items()
    }


def router_aux_coef(model: SentenceTransformer, config: ObjectiveConfig) -> float | None:
    """The router loss weight in use: None for a dense model, else the stage's or the model config's."""
    from embedforge.models.moe import is_moe, router_aux_loss_coef

    first = model[0]
    if not (hasattr(first, "model") and hasattr(first.model, "config") and is_moe(model)):
        if config.router_aux_loss_coef:
            logger.warning(
                "router_aux_loss_coef=%g is ignored: the model is not a mixture-of-experts transformer",
                config.router_aux_loss_coef,
            )
        return None
    coef = router_aux_loss_coef(model) if config.router_aux_loss_coef is None else config.router_aux_loss_coef
    return float(coef)


def release_objectives(losses: Mapping[str, nn.Module]) -> None:
    """Remove the hooks the router loss put on the model (before saving it)."""
    from embedforge.losses.router_aux import RouterAuxLoss

    for loss in losses.values():
        for module in loss.modules():
            if isinstance(module, RouterAuxLoss):
                module.collector.remove()


def describe_loss(loss: nn.Module) -> str:
    """One line: the modifiers outside in, then the base loss with its configuration."""
    config = loss.get_config_dict() if hasattr(loss, "get_config_dict") else {}
    inner = loss.__dict__.get("_modules", {}).get("loss")
    text = f"{type(loss).__name__}({', '.join(f'{k}={v}' for k, v in config.items() if k != 'loss')})"
    return f"{text} over {describe_loss(inner)}" if inner is not None else text


def uses_gradient_cache(loss: nn.Module) -> bool:
    """Whether ``loss`` (or a loss it wraps, e.g. inside Matryoshka) embeds with GradCache."""
    from sentence_transformers.base.losses.gradcache import CachedLossMixin

    return any(
        isinstance(module, CachedLossMixin) and getattr(module, "uses_gradient_cache", True)
        for module in loss.modules()
    )


def _wrap_router_aux(
    loss: nn.Module, model: SentenceTransformer, coef: float, collector: Any, dataset: str
) -> nn.Module:
    from embedforge.losses.router_aux import RouterAuxLoss

    if uses_gradient_cache(loss):
        raise ConfigError(
            f"the MoE router load-balancing loss cannot be added to GradCache losses (dataset {dataset}): "
            "GradCache embeds without gradients first and re-embeds inside the backward pass, where no extra "
            "loss term can join. Remove gradcache_mini_batch, or set router_aux_loss_coef: 0 to train this MoE "
            "model without the router loss."
        )
    return RouterAuxLoss(model, loss, coef=coef, collector=collector)


def _construct(cls: type[nn.Module], model: SentenceTransformer, options: Mapping[str, Any]) -> nn.Module:
    try:
        return cls(model, **options)
    except ConfigError:
        raise
    except (ValueError, TypeError) as error:
        raise ConfigError(f"{cls.__name__}: {error}") from error
