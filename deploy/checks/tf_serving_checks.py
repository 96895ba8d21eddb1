"""deploy/tf-serving: models.config and batching.config parsed as TF Serving's own protos."""

from __future__ import annotations

from pathlib import Path

from report import Report


def batching_parameters_class():
    """BatchingParameters (tensorflow_serving/servables/tensorflow/session_bundle_config.proto),
    built from its field list: the tensorflow-serving-api wheel does not ship this message."""
    from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, wrappers_pb2

    f = descriptor_pb2.FieldDescriptorProto
    fields = [
        ("max_batch_size", 1, ".google.protobuf.Int64Value", None),
        ("batch_timeout_micros", 2, ".google.protobuf.Int64Value", None),
        ("max_enqueued_batches", 3, ".google.protobuf.Int64Value", None),
        ("num_batch_threads", 4, ".google.protobuf.Int64Value", None),
        ("thread_pool_name", 5, ".google.protobuf.StringValue", None),
        ("allowed_batch_sizes", 6, None, f.TYPE_INT64),
        ("pad_variable_length_inputs", 7, None, f.TYPE_BOOL),
    ]
    file = descriptor_pb2.FileDescriptorProto(
        name="hv_check_batching.proto", package="hvcheck", syntax="proto3",
        dependency=["google/protobuf/wrappers.proto"])
    msg = file.message_type.add(name="BatchingParameters")
    for name, number, type_name, scalar in fields:
        field = msg.field.add(name=name, number=number)
        if name == "allowed_batch_sizes":
            field.label = f.LABEL_REPEATED
        else:
            field.label = f.LABEL_OPTIONAL
        if type_name:
            field.type = f.TYPE_MESSAGE
            field.type_name = type_name
        else:
            field.type = scalar
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(wrappers_pb2.DESCRIPTOR.serialized_pb)
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("hvcheck.BatchingParameters"))


def check_tf_serving(folder: Path) -> int:
    r = Report(f"tf-serving {folder}")
    from google.protobuf import text_format

    try:
        from tensorflow_serving.config import model_server_config_pb2
    except ImportError as exc:
        r.check(False, f"tensorflow_serving.config not importable ({exc}); install tensorflow-serving-api --no-deps")
        return r.finish()

    try:
        cfg = text_format.Parse((folder / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    except text_format.ParseError as exc:
        r.check(False, f"models.config: {exc}")
        return r.finish()
    models = {c.name: c for c in cfg.model_config_list.config}
    if r.check("hemovision" in models, "models.config must configure the `hemovision` model"):
        m = models["hemovision"]
        r.check(m.base_path == "/models/hemovision", f"base_path {m.base_path!r}, want /models/hemovision")
        r.check(m.model_platform == "tensorflow", "model_platform must be tensorflow")
        r.check(m.HasField("model_version_policy"), "a model_version_policy is required")

    try:
        batching = text_format.Parse((folder / "batching.config").read_text(), batching_parameters_class()())
    except text_format.ParseError as exc:
        r.check(False, f"batching.config: {exc}")
        return r.finish()
    r.check(batching.max_batch_size.value > 0, "max_batch_size must be set")
    r.check(batching.batch_timeout_micros.value > 0, "batch_timeout_micros must be set")
    sizes = list(batching.allowed_batch_sizes)
    if sizes:
        r.check(sizes == sorted(set(sizes)), "allowed_batch_sizes must increase")
        r.check(sizes[-1] == batching.max_batch_size.value, "the last allowed_batch_size must equal max_batch_size")
    return r.finish()
