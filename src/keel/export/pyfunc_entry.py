"""The code file of a Keel MLflow export ("models from code"): MLflow runs it to get the model.

``keel export mlflow`` copies this file into the exported folder; nothing is pickled.
"""

from mlflow.models import set_model

from keel.export.pyfunc import KeelPyfunc

set_model(KeelPyfunc())
