"""Grad-CAM: where in the photo the evidence for the predicted breed lies.

One compiled `tf.function` runs the forward pass and the gradient of the top
class's score (its logit when the model ends in a softmax Dense layer) with
respect to the last convolutional layer's output, so
a prediction and its heatmap cost one call with a fixed input signature (no
retracing, no growth across requests).

Tracing that function is most of a cold load, so it is kept small: the tape
watches only the layers after the convolutional one (the backbone runs outside
it, so no gradient graph is built for the ~130 layers a Grad-CAM never needs),
and the function is plain Python that autograph has nothing to convert in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from demos.durian import tfenv  # noqa: F401 - sets TensorFlow's log level first

import keras
import tensorflow as tf


@dataclass(frozen=True)
class Explanation:
    probabilities: np.ndarray  # (n_classes,)
    cam: np.ndarray  # (h, w) in [0, inf); the conv layer's resolution


def cam_from(features: tf.Tensor, grads: tf.Tensor) -> tf.Tensor:
    """Channel weights = mean gradient; map = ReLU of the weighted feature sum."""
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(features * weights, axis=-1))[0]


def _softmax_head(model: keras.Model):
    """The final Dense layer if it ends in softmax: Grad-CAM then differentiates
    the class logit, which does not saturate the way a probability near 1 does."""
    last = model.layers[-1]
    if isinstance(last, keras.layers.Dense) and last.activation is keras.activations.softmax:
        return last
    return None


class Explainer:
    """Probabilities and a Grad-CAM map for one image batch of shape (1, H, W, 3).

    Made by `trace` from a Keras model, or by `restore` from a folder `save`
    wrote: a TensorFlow SavedModel of the traced function and the variables it
    reads, so a later worker of the same model skips building the Keras model
    and tracing (restoring is a graph import and a checkpoint read)."""

    def __init__(self, module: tf.Module):
        self._module = module  # .explain: the function; .weights: the variables it reads

    @classmethod
    def trace(cls, model: keras.Model, last_conv_layer: str) -> "Explainer":
        module = tf.Module()
        module.explain = _grad_cam_function(model, last_conv_layer)
        module.weights = [variable.value for variable in model.variables]  # TensorFlow's own variables
        return cls(module)

    @classmethod
    def restore(cls, folder: Path) -> "Explainer":
        return cls(tf.saved_model.load(str(folder)))

    def save(self, folder: Path) -> None:
        """No serving signature and no saver ops: only `restore` reads this folder, and
        leaving them (and Keras's variable wrappers) out makes writing it ~5x faster."""
        tf.saved_model.save(self._module, str(folder), signatures={},
                            options=tf.saved_model.SaveOptions(experimental_skip_saver=True))

    def __call__(self, batch: np.ndarray) -> Explanation:
        probs, cam = self._module.explain(tf.convert_to_tensor(batch, dtype=tf.float32))
        return Explanation(probabilities=probs.numpy().astype(np.float64), cam=cam.numpy())


def _grad_cam_function(model: keras.Model, last_conv_layer: str):
    """One tf.function with a fixed input signature: (probabilities, Grad-CAM map)."""
    try:
        conv = model.get_layer(last_conv_layer)
    except ValueError:
        raise ValueError(f"the model has no layer named {last_conv_layer!r} (config.json "
                         "last_conv_layer)") from None
    head = _softmax_head(model)
    head_input = head.input if head is not None else model.outputs[0]
    backbone = keras.Model(model.inputs, conv.output)
    try:
        top: keras.Model | None = keras.Model(conv.output, head_input)
    except ValueError:  # a path to the output skips the layer: tape the whole model
        top, whole = None, keras.Model(model.inputs, [conv.output, head_input])

    def explain(x: tf.Tensor):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            if top is None:
                tape.watch(x)
                features, scores = whole(x, training=False)
            else:  # nothing is watched yet, so the backbone is not taped
                features = backbone(x, training=False)
                tape.watch(features)
                scores = top(features, training=False)
            if head is not None:
                scores = keras.ops.matmul(scores, head.kernel) + head.bias
                probs = tf.nn.softmax(scores)
            else:
                probs = scores
            best = tf.argmax(probs[0])
            score = tf.gather(scores[0], best)
        grads = tape.gradient(score, features)
        return probs[0], cam_from(features, grads)

    shape = (1, *model.inputs[0].shape[1:])
    return tf.function(explain, input_signature=[tf.TensorSpec(shape, tf.float32)], reduce_retracing=True,
                       autograph=False)
