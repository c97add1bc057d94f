"""The file MLflow runs to build the registered pyfunc model ("models from code": no pickle).

See pipeline/mlops/pyfunc.py; ``save_pyfunc`` copies this file into the model folder.
"""

import mlflow

from pipeline.mlops.pyfunc import JpegRestorationModel

mlflow.models.set_model(JpegRestorationModel())
