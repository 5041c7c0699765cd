"""Loss modifiers forward their wrapped loss's options (as sentence-transformers' cached losses do).

A modifier (GradCache, Matryoshka, the MoE router loss) holds the loss it modifies in ``self.loss``. With
:class:`ForwardsWrappedOptions` first in its bases, reading or assigning one of the wrapped loss's options on
the modifier reaches the wrapped loss, through any number of modifiers::

    loss = RouterAuxLoss(model, MatryoshkaLoss(model, CachedInfoNCELoss(model, gamma=0.5), [32, 16]))
    loss.gamma          # 0.5, read from the InfoNCELoss inside
    loss.gamma = 0.2    # set on the InfoNCELoss inside

The options are the wrapped loss's constructor arguments (sentence-transformers' ``_delegated_to_wrapped_loss``
lists them by hand; here they are read off the signature, so a new option needs no edit). The modifier's own
attributes win over the wrapped loss's.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from embedforge.losses.objective import constructor_options


def forwarded_options(loss: nn.Module) -> set[str]:
    """Every option reachable through ``loss``'s chain of wrapped losses (``loss.loss.loss...``)."""
    names: set[str] = set()
    inner = loss.__dict__.get("_modules", {}).get("loss")
    while isinstance(inner, nn.Module):
        names.update(constructor_options(type(inner)))
        inner = inner.__dict__.get("_modules", {}).get("loss")
    return names


class ForwardsWrappedOptions:
    """Mixin for an ``nn.Module`` modifier with a wrapped ``self.loss``: its options read and write through."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)  # type: ignore[misc]  # nn.Module: parameters, buffers, modules
        except AttributeError:
            inner = self.__dict__.get("_modules", {}).get("loss")
            if inner is not None and name in forwarded_options(self):  # type: ignore[arg-type]
                return getattr(inner, name)
            raise

    def __setattr__(self, name: str, value: Any) -> None:
        inner = self.__dict__.get("_modules", {}).get("loss")
        if (
            inner is not None and name not in self.__dict__ and name in forwarded_options(self)  # type: ignore[arg-type]
        ):
            setattr(inner, name, value)
        else:
            super().__setattr__(name, value)
