"""Running studies: the suggest-evaluate loop, a cohort's scheduler, per-user studies, early stopping, executors."""
