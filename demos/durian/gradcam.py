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
    """Probabilities and a Grad-CAM map for one image batch of shape (1, H, W, 3)."""

    def __init__(self, model: keras.Model, last_conv_layer: str):
        try:
            conv = model.get_layer(last_conv_layer)
        except ValueError:
            raise ValueError(f"the model has no layer named {last_conv_layer!r} (config.json "
                             "last_conv_layer)") from None
        self._head = _softmax_head(model)
        scores = self._head.input if self._head is not None else model.outputs[0]
        self._backbone = keras.Model(model.inputs, conv.output)
        try:
            self._top: keras.Model | None = keras.Model(conv.output, scores)
        except ValueError:  # a path to the output skips the layer: tape the whole model
            self._top = None
            self._whole = keras.Model(model.inputs, [conv.output, scores])
        shape = (1, *model.inputs[0].shape[1:])
        self._run = tf.function(self._explain, input_signature=[tf.TensorSpec(shape, tf.float32)],
                                reduce_retracing=True, autograph=False)

    def _explain(self, x: tf.Tensor):
        with tf.GradientTape(watch_accessed_variables=False) as tape:
            if self._top is None:
                tape.watch(x)
                features, scores = self._whole(x, training=False)
            else:  # nothing is watched yet, so the backbone is not taped
                features = self._backbone(x, training=False)
                tape.watch(features)
                scores = self._top(features, training=False)
            if self._head is not None:
                scores = keras.ops.matmul(scores, self._head.kernel) + self._head.bias
                probs = tf.nn.softmax(scores)
            else:
                probs = scores
            top = tf.argmax(probs[0])
            score = tf.gather(scores[0], top)
        grads = tape.gradient(score, features)
        return probs[0], cam_from(features, grads)

    def __call__(self, batch: np.ndarray) -> Explanation:
        probs, cam = self._run(tf.convert_to_tensor(batch, dtype=tf.float32))
        return Explanation(probabilities=probs.numpy().astype(np.float64), cam=cam.numpy())
