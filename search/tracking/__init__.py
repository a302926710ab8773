"""MLflow, in one place: every module of ``search`` that talks to MLflow is here.

- :mod:`.store`: which store (URI), whether it can be used, the store-creation lock, ``mlflow.json``;
- :mod:`.tracker`: :class:`~search.tracking.tracker.Tracker`, a study's runs (experiment, parent run, a run
  per trial) and the runs beside them (the one path that ends a run);
- :mod:`.run_content`: what those runs hold (tags, metrics) as plain mappings;
- :mod:`.artifacts`, :mod:`.plots`: the parent run's files and pictures;
- :mod:`.views`, :mod:`.links`: the UI's saved views (built, then written by one function) and the links;
- :mod:`.cohort`: a per-user study's ``cohort`` run; :mod:`.registry`: the model registry;
- :mod:`.server`: ``mlflow server`` for ``pers-search ui``;
- :mod:`.usage_reporting`: MLflow's (and Ray's, the HF hub's) usage reporting switched off.

Import from the modules themselves: this package module imports nothing, so that importing one of them
(``usage_reporting`` from an executor, ``plots`` from a command) loads only what it needs.
"""
