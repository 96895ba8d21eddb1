"""The embedded TensorFlow-Serving-compatible model server.

gRPC (tensorflow_serving.apis PredictionService + ModelService, grpc.health.v1) on
8500, TF Serving's REST API + Prometheus metrics on 8501. See docs/serving.md.
"""
