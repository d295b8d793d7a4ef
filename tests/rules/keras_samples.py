"""Build Keras files at test time: real-shaped Keras 3 configs (as Keras 3.15 writes them), ``.keras`` zips and
legacy ``.h5`` files with a ``model_config`` attribute. Nothing here imports Keras."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path
from typing import Any

import h5py
import numpy as np


def obj(module: str, class_name: str, config: Any = None, registered: str | None = None, **extra: Any) -> dict:
    return {"module": module, "class_name": class_name, "config": {} if config is None else config,
            "registered_name": registered, **extra}


def policy() -> dict:
    return obj("keras", "DTypePolicy", {"name": "float32"})


def init(name: str, **config: Any) -> dict:
    return obj("keras.initializers", name, config)


def tensor(shape: list, source: str) -> dict:
    return {"class_name": "__keras_tensor__", "config": {"shape": shape, "dtype": "float32",
                                                          "keras_history": [source, 0, 0]}}


def layer(class_name: str, name: str, inputs: list[str] | None = None, module: str = "keras.layers",
          **config: Any) -> dict:
    body = {"name": name, "trainable": True, "dtype": policy(), **config}
    nodes = [{"args": [tensor([None, 8], source) for source in inputs], "kwargs": {}}] if inputs else []
    return {**obj(module, class_name, body), "build_config": {"input_shape": [None, 8]}, "name": name,
            "inbound_nodes": nodes}


def dense(name: str, inputs: list[str], units: int = 8, activation: Any = "relu") -> dict:
    return layer("Dense", name, inputs, units=units, activation=activation, use_bias=True,
                 kernel_initializer=init("GlorotUniform", seed=None),
                 bias_initializer=init("Zeros"),
                 kernel_regularizer=obj("keras.regularizers", "L2", {"l2": 0.01}),
                 bias_regularizer=None, activity_regularizer=None,
                 kernel_constraint=obj("keras.constraints", "MaxNorm", {"max_value": 2.0, "axis": 0}),
                 bias_constraint=None, quantization_config=None)


def input_layer(name: str = "features") -> dict:
    return {**obj("keras.layers", "InputLayer", {"batch_shape": [None, 8], "dtype": "float32", "sparse": False,
                                                  "ragged": False, "name": name, "optional": False}),
            "name": name, "inbound_nodes": []}


def compile_config() -> dict:
    schedule = obj("keras.optimizers.schedules", "ExponentialDecay",
                   {"initial_learning_rate": 0.001, "decay_steps": 1000, "decay_rate": 0.9, "staircase": False,
                    "name": "ExponentialDecay"})
    adam = obj("keras.optimizers", "Adam", {"name": "adam", "learning_rate": schedule, "weight_decay": None,
                                            "clipnorm": None, "global_clipnorm": None, "clipvalue": None,
                                            "use_ema": False, "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                                            "loss_scale_factor": None, "gradient_accumulation_steps": None,
                                            "beta_1": 0.9, "beta_2": 0.999, "epsilon": 1e-07, "amsgrad": False})
    return {"optimizer": adam,
            "loss": obj("keras.losses", "SparseCategoricalCrossentropy",
                        {"name": "sparse_categorical_crossentropy", "reduction": "sum_over_batch_size",
                         "from_logits": True, "ignore_class": None}),
            "loss_weights": None,
            "metrics": [obj("keras.metrics", "SparseCategoricalAccuracy", {"name": "acc", "dtype": "float32"}),
                        "mae"],
            "weighted_metrics": None, "run_eagerly": False, "steps_per_execution": 1, "jit_compile": False}


def functional(layers: list[dict], name: str = "model", compiled: bool = True) -> dict:
    last = layers[-1]["name"]
    config = {"module": "keras.src.models.functional", "class_name": "Functional",
              "config": {"name": name, "trainable": True, "layers": layers,
                         "input_layers": [[layers[0]["name"], 0, 0]], "output_layers": [[last, 0, 0]]},
              "registered_name": "Functional", "build_config": {"input_shape": None}}
    if compiled:
        config["compile_config"] = compile_config()
    return config


def benign_functional() -> dict:
    """A functional model with the common layers, a nested Sequential and wrappers, compiled with Adam + schedule."""
    mha = layer("MultiHeadAttention", "mha", ["features", "features"], num_heads=2, key_dim=4, value_dim=4,
                dropout=0.0, use_bias=True, output_shape=None, attention_axes=[1],
                kernel_initializer=init("GlorotUniform", seed=None), bias_initializer=init("Zeros"),
                kernel_regularizer=None, bias_regularizer=None, activity_regularizer=None, kernel_constraint=None,
                bias_constraint=None, seed=None)
    lstm = layer("LSTM", "lstm", ["embed"], units=8, activation="tanh", recurrent_activation="sigmoid",
                 use_bias=True, kernel_initializer=init("GlorotUniform", seed=None),
                 recurrent_initializer=init("Orthogonal", gain=1.0, seed=None), bias_initializer=init("Zeros"),
                 unit_forget_bias=True, dropout=0.0, recurrent_dropout=0.0, seed=None, return_sequences=True,
                 return_state=False, go_backwards=False, stateful=False, unroll=False, zero_output_for_mask=False)
    inner = {"module": "keras", "class_name": "Sequential", "registered_name": None, "name": "block",
             "config": {"name": "block", "trainable": True, "dtype": policy(), "layers": [
                 input_layer("block_in"),
                 obj("keras.layers", "Conv1D", {"name": "conv", "filters": 4, "kernel_size": [3], "strides": [1],
                                                "padding": "same", "data_format": "channels_last",
                                                "activation": "gelu", "kernel_initializer": init("HeNormal", seed=None),
                                                "bias_initializer": init("Zeros")}),
                 obj("keras.layers", "BatchNormalization", {"name": "bn", "axis": -1, "momentum": 0.99,
                                                            "epsilon": 0.001, "center": True, "scale": True,
                                                            "moving_mean_initializer": init("Zeros"),
                                                            "moving_variance_initializer": init("Ones"),
                                                            "synchronized": False}),
                 obj("keras.layers", "Dropout", {"name": "drop", "rate": 0.1, "seed": None, "noise_shape": None})]},
             "build_config": {"input_shape": [None, 8, 8]}, "inbound_nodes": [
                 {"args": [tensor([None, 8, 8], "lstm")], "kwargs": {"training": False}}]}
    bidirectional = layer("Bidirectional", "bi", ["block"], merge_mode="concat",
                          layer=obj("keras.layers", "GRU", {"name": "gru", "units": 4, "activation": "tanh",
                                                            "recurrent_activation": "sigmoid"}),
                          backward_layer=obj("keras.layers", "GRU", {"name": "gru_back", "units": 4,
                                                                     "go_backwards": True}))
    time_dist = layer("TimeDistributed", "td", ["bi"], layer=obj("keras.layers", "Dense", {"name": "tdd", "units": 4}))
    layers = [
        input_layer(),
        layer("Embedding", "embed", ["features"], input_dim=100, output_dim=8, embeddings_initializer=init(
            "RandomUniform", minval=-0.05, maxval=0.05, seed=None), embeddings_regularizer=None, mask_zero=False),
        lstm, inner, bidirectional, time_dist, mha,
        layer("LayerNormalization", "ln", ["mha"], axis=[-1], epsilon=0.001, center=True, scale=True,
              rms_scaling=False, beta_initializer=init("Zeros"), gamma_initializer=init("Ones")),
        layer("Add", "add", ["ln", "td"]), layer("Concatenate", "cat", ["add", "ln"], axis=-1),
        layer("Activation", "act", ["cat"], activation="softmax"),
        layer("GlobalAveragePooling1D", "pool", ["act"], data_format="channels_last", keepdims=False),
        dense("head", ["pool"], units=3, activation=obj("keras.activations", "function", "softmax", "softmax")),
    ]
    return functional(layers)


def benign_sequential() -> dict:
    return {"module": "keras", "class_name": "Sequential", "registered_name": None,
            "config": {"name": "seq", "trainable": True, "dtype": policy(), "layers": [
                input_layer("in"),
                obj("keras.layers", "Conv2D", {"name": "c1", "filters": 8, "kernel_size": [3, 3], "strides": [1, 1],
                                               "padding": "valid", "activation": "relu",
                                               "kernel_initializer": init("GlorotUniform", seed=None)}),
                obj("keras.layers", "MaxPooling2D", {"name": "p1", "pool_size": [2, 2], "padding": "valid"}),
                obj("keras.layers", "Flatten", {"name": "flat", "data_format": "channels_last"}),
                obj("keras.layers", "Dense", {"name": "out", "units": 10, "activation": "softmax"})]},
            "build_config": {"input_shape": [None, 28, 28, 1]},
            "compile_config": {"optimizer": "rmsprop", "loss": "categorical_crossentropy", "metrics": ["accuracy"],
                               "loss_weights": None, "weighted_metrics": None, "run_eagerly": False,
                               "steps_per_execution": 1, "jit_compile": False}}


def weights_h5() -> bytes:
    """A tiny Keras 3 weights store (layers/<name>/vars/<i>), as bytes."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as handle:
        group = handle.create_group("layers/head/vars")
        group.create_dataset("0", data=np.arange(24, dtype=np.float32).reshape(8, 3) / 24)
        group.create_dataset("1", data=np.zeros(3, np.float32))
        handle.create_group("vars")
    return buffer.getvalue()


def write_keras(path: Path, config: dict, compression: int = zipfile.ZIP_STORED) -> Path:
    with zipfile.ZipFile(path, "w", compression=compression) as archive:
        archive.writestr("metadata.json", json.dumps({"keras_version": "3.15.1", "date_saved": "2026-01-01@00:00:00"}))
        archive.writestr("config.json", json.dumps(config))
        archive.writestr("model.weights.h5", weights_h5())
    return path


def write_legacy_h5(path: Path, config: dict, training: dict | None = None) -> Path:
    with h5py.File(path, "w") as handle:
        handle.attrs["keras_version"] = "2.15.0"
        handle.attrs["backend"] = "tensorflow"
        handle.attrs["model_config"] = json.dumps(config)
        if training is not None:
            handle.attrs["training_config"] = json.dumps(training)
        weights = handle.create_group("model_weights")
        weights.attrs["layer_names"] = np.array([b"dense"])
        dense_group = weights.create_group("dense")
        dense_group.attrs["weight_names"] = np.array([b"dense/kernel:0"])
        dense_group.create_dataset("dense/kernel:0", data=np.ones((4, 2), np.float32))
    return path


def legacy_sequential(*layers: dict) -> dict:
    """A tf.keras 2.x model_config (class_name only, no module)."""
    base = [{"class_name": "InputLayer", "config": {"batch_input_shape": [None, 4], "dtype": "float32",
                                                     "sparse": False, "ragged": False, "name": "input_1"}},
            {"class_name": "Dense", "config": {"name": "dense", "trainable": True, "dtype": "float32", "units": 2,
                                               "activation": "relu", "use_bias": True,
                                               "kernel_initializer": {"class_name": "GlorotUniform",
                                                                      "config": {"seed": None}},
                                               "bias_initializer": {"class_name": "Zeros", "config": {}},
                                               "kernel_regularizer": {"class_name": "L1L2",
                                                                      "config": {"l1": 0.0, "l2": 0.01}},
                                               "kernel_constraint": None}}]
    return {"class_name": "Sequential", "config": {"name": "sequential", "layers": [*base, *layers]},
            "keras_version": "2.15.0", "backend": "tensorflow"}


LEGACY_TRAINING = {"loss": "categorical_crossentropy", "metrics": [[{"class_name": "MeanMetricWrapper",
                                                                     "config": {"name": "accuracy", "dtype": "float32",
                                                                                "fn": "categorical_accuracy"}}]],
                   "weighted_metrics": None, "loss_weights": None,
                   "optimizer_config": {"class_name": "Adam", "config": {"name": "Adam", "learning_rate": 0.001,
                                                                         "decay": 0.0, "beta_1": 0.9, "beta_2": 0.999,
                                                                         "epsilon": 1e-07, "amsgrad": False}}}


# tf.keras 2.11-2.15 writes its optimizers under their default registration, "Custom>Adam".
LEGACY_TRAINING_TF211 = {**LEGACY_TRAINING, "optimizer_config": {
    "class_name": "Custom>Adam", "config": {"name": "Adam", "weight_decay": None, "clipnorm": None,
                                            "global_clipnorm": None, "clipvalue": None, "use_ema": False,
                                            "ema_momentum": 0.99, "ema_overwrite_frequency": None,
                                            "jit_compile": False, "is_legacy_optimizer": False,
                                            "learning_rate": 0.001, "beta_1": 0.9, "beta_2": 0.999,
                                            "epsilon": 1e-07, "amsgrad": False}}}
