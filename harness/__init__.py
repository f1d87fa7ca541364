"""mlflow-crd-harness: prove an MLflow project runs on Kubernetes through a CustomJob.

The package is split by job: cluster lifecycle, image building, stack deployment,
the MLflow ``customjob`` project backend, run assertions and the pytest plugin.
"""

__version__ = "0.1.0"
