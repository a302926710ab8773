"""Per-Pcs (Personalized Pieces): a shared pool of sharers' LoRA pieces with gates, and
per-user PEFTs assembled from it by top-k piece selection instead of training.

Modules: :mod:`.sharers` (who shares), :mod:`.history` (a user's history as training examples,
and training on it the way the trial runner does), :mod:`.gates` (gated LoRA forward and gate
training), :mod:`.pool` (build, store, find and describe a pool), :mod:`.assembly` (score, pick,
weigh and materialise a target user's PEFT). Import from the submodules; this package imports
nothing heavy.
"""
