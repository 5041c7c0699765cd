"""Small shared helpers (atomic file writes, jsonl reading with file:line errors)."""
