"""The jpeg-restoration library, in wings that follow its three journeys.

- Restore a photo: ``core`` (files, devices, pixel and metadata I/O, JPEG forensics) -> ``restoration``
  (``RestoreOptions`` and the ``Restorer``: the decision, the engines, tiles, projection, the
  output writer, folders of files). Doors: ``python -m pipeline.restore``, ``python -m
  pipeline.test``, the app (``app.py``, ``app_pages/``) and the served model (``mlops``).
- Train and evaluate: ``data`` (the catalog, downloads, training degradations, the real-world
  cases) and ``models`` (architectures, checkpoints) -> ``training`` (losses, the fit loop) and
  ``evaluation`` (metrics, scoring, the results contract, the report's parts, experiments).
- Register and serve: ``mlops`` (MLflow runs, the model registry, the pyfunc model, promotion).
  Doors: ``python -m pipeline.promote`` (the champion by hand), ``python -m pipeline.ablations``
  (the ablation table), ``python -m pipeline.plan`` (what a configuration will cost), the stages.

``params`` (params.yaml -> typed dataclasses) sits between the lower wings and ``restoration``.
``FLOORS`` says which wing may import which: a module imports its own wing and lower floors
only (tests/test_layout.py checks every import, with the closure code of tests/test_dvc_deps.py).
The DVC stages (``stages/``), the app, the CLIs and the benchmarks stand on top; ``scripts/``
and the shipped model's recipe (``models/pretrained/recipe/``) above them.
"""

FLOORS = {
    "core": 0,
    "data": 1,
    "models": 1,
    "params": 2,
    "restoration": 3,
    "evaluation": 4,
    "training": 5,
    "mlops": 5,
    "doors": 6,  # stages/, app.py, app_pages/, benchmarks/, the CLIs pipeline/<name>.py (restore, promote...)
    "scripts": 7,  # scripts/, models/pretrained/recipe/
}
