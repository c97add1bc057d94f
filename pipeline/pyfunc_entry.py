"""The file MLflow runs to build the registered pyfunc model ("models from code": no pickle).

See pipeline/mlflow_model.py; ``save_pyfunc`` copies this file into the model folder.
"""

import mlflow

from pipeline.mlflow_model import JpegRestorationModel

mlflow.models.set_model(JpegRestorationModel())
