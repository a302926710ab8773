"""A study: its trials on disk, its one writer's lock, what its trials ran on, the objective a trial becomes."""
