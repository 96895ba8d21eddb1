"""Tests against the real infrastructure.

fixtures          `postgres_url`, `redis_url` (pytest plugin)
tokens            TokenFactory: real access tokens in auth's format from an own key pair
model_fixtures    `contract_models`, `model_base` (pytest plugin; TensorFlow only when used)
contract_model    build_contract_model / publish_version: a tiny SavedModel of the HemoVision contract
model_server      ModelServerProcess: the embedded model server as a real child process
"""
