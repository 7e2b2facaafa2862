"""EfficientDet-Lite, built with Keras layers from its published definition (random weights).

The published EfficientDet-Lite .tflite files (TF Model Garden / MediaPipe / the benchmarks in
benchmarks/device_calibration.csv) come from google/automl efficientdet. Weights do not change
speed, so this builds the same graph with random weights: what the emulator counts is the work
of the published architecture. The configuration, from automl's `hparams_config.py` lite
entries and `efficientdet_keras.py` (first written from memory; since checked against automl's
own code by benchmarks/efficientdet_automl_check.py: the same parameter counts, 3,290,606 and
5,324,894, and the same type and output shape for every convolution, add, pool and resize; the
post-process is not compared, and its points marked "unsure" below remain so):

    efficientdet_lite0: backbone efficientnet-lite0, image 320, fpn_num_filters 64,
                        fpn_cell_repeats 3, box_class_repeats 3
    efficientdet_lite2: backbone efficientnet-lite2, image 448, fpn_num_filters 112,
                        fpn_cell_repeats 5, box_class_repeats 3
    efficientdet_lite4: backbone efficientnet-lite4, image 640, fpn_num_filters 224,
                        fpn_cell_repeats 7, box_class_repeats 4 (read from automl's hparams_config.py in that wheel;
                        not built by the check; its anchor_scale is automl's default 4, which moves
                        the anchors' sizes only, not the work)
    all: min_level 3, max_level 7, num_scales 3, aspect_ratios (1, 2, 0.5) -> 9 anchors,
          anchor_scale 3, num_classes 90, act relu6, fpn_weight_method sum,
          separable_conv, conv_bn_act_pattern False, apply_bn_for_resampling,
          conv_after_downsample False, max-pool downsampling, nearest upsampling,
          survival_prob None (no residual in the heads), TFLite post-process with
          max_detections 25, max_classes_per_detection 1, fast (not regular) NMS.

- Backbone: EfficientNet-Lite's MBConv stages (benchmarks/efficientnet_lite.py, the same code
  path as the classifier) without its 1280-filter head; P3, P4, P5 are the outputs of the stride
  8, 16 and 32 stages (40, 112, 320 filters for Lite0).
- P6 = 3x3/2 max-pool of (1x1 conv + BN of P5 to fpn_num_filters); P7 = 3x3/2 max-pool of P6.
- BiFPN cell (repeated): top-down P6', P5', P4', P3 out, then bottom-up P4, P5, P6, P7 out; each
  node sums its inputs (each resampled to the node's level and width: 1x1 conv + BN where the width
  differs, which happens only for the backbone's P3-P5 in the first cell, once per use; nearest
  resize up, 3x3/2 max-pool down), then ReLU6, 3x3 separable conv (with bias), BN.
- Class and box nets: box_class_repeats x (3x3 separable conv, shared by the five levels; BN, one
  per level; ReLU6), then a 3x3 separable conv to 9 x 90 class logits (bias at the focal-loss prior
  -log(99)) or 9 x 4 box codes; the levels are concatenated (19,206 anchors at 320, 37,629 at 448).
- Post-process: sigmoid on the class logits, then TFLite's `TFLite_Detection_PostProcess` custom
  op (automl's `postprocess_tflite`: a `tf.function` whose `experimental_implements` names the op,
  which the converter legalizes to it), with the anchors as a constant in centre-size form and
  x/y/h/w scales 1.
- Unsure: the NMS score threshold automl writes into the op (score_thresh of the lite configs;
  0.4 here) and its IoU threshold (0.5 here): they change only how many candidates the post-process
  sorts; the anchors' exact sizes (no effect on speed). In the int8 file (full-integer, uint8 input,
  float outputs) the converter runs the sigmoid in int8 and dequantizes the scores and box codes into
  the float post-process; whether the published int8 files feed the op quantized inputs instead I
  do not know (the post-process is ~4% of the int8 Lite0 instructions either way).
- Sizes: int8 files of 4.34 and 7.04 MB (Model Maker's EfficientDet-Lite table, as remembered and
  not looked up: 4.4 and 7.2 MB).
"""

from __future__ import annotations

import math

import efficientnet_lite

# name -> (backbone, input side, fpn_num_filters, fpn_cell_repeats, box_class_repeats)
VARIANTS = {"efficientdet_lite0": ("efficientnet_lite0", 320, 64, 3, 3),
            "efficientdet_lite2": ("efficientnet_lite2", 448, 112, 5, 3),
            "efficientdet_lite4": ("efficientnet_lite4", 640, 224, 7, 4)}
LEVELS = (3, 4, 5, 6, 7)
NUM_CLASSES = 90
ASPECT_RATIOS = (1.0, 2.0, 0.5)
NUM_SCALES = 3
ANCHORS_PER_CELL = len(ASPECT_RATIOS) * NUM_SCALES
ANCHOR_SCALE = 3.0
MAX_DETECTIONS = 25
SCORE_THRESHOLD = 0.4
IOU_THRESHOLD = 0.5


def level_sides(side: int) -> list[int]:
    """Feature-map side of P3..P7 ('same' padding rounds up at every stride 2)."""
    sides = [side]
    for _ in range(LEVELS[-1]):
        sides.append(math.ceil(sides[-1] / 2))
    return [sides[level] for level in LEVELS]


def anchors(side: int):
    """(num anchors, 4) anchors in centre-size form [yc, xc, h, w], pixels, in the heads' output order
    (level, row, column, anchor)."""
    import numpy as np

    out = []
    for level, n in zip(LEVELS, level_sides(side)):
        stride = side / n
        centres = (np.arange(n) + 0.5) * stride
        yc, xc = np.meshgrid(centres, centres, indexing="ij")
        sizes = []
        for octave in range(NUM_SCALES):
            base = ANCHOR_SCALE * 2 ** level * 2 ** (octave / NUM_SCALES)
            for ratio in ASPECT_RATIOS:
                sizes.append((base / math.sqrt(ratio), base * math.sqrt(ratio)))  # (h, w)
        hw = np.array(sizes, dtype=np.float32)
        grid = np.stack([yc, xc], -1).reshape(-1, 1, 2).repeat(len(sizes), axis=1)
        out.append(np.concatenate([grid, np.broadcast_to(hw, grid.shape)], -1).reshape(-1, 4))
    return np.concatenate(out).astype(np.float32)


def build(name: str):
    """The Keras model of EfficientDet-Lite `name` up to the post-process: (box codes (1, N, 4),
    class logits (1, N, 90)) for N anchors."""
    import numpy as np
    import tensorflow as tf

    layers = tf.keras.layers
    backbone, side, width, cells, head_repeats = VARIANTS[name]

    def bn(x):
        return layers.BatchNormalization()(x)

    def resample(x, level_from: int, level_to: int, target_side: int):
        if x.shape[-1] != width:
            x = bn(layers.Conv2D(width, 1, padding="same")(x))
        for _ in range(level_to - level_from):
            x = layers.MaxPooling2D(3, 2, padding="same")(x)
        if level_to < level_from:
            x = layers.Resizing(target_side, target_side, interpolation="nearest")(x)
        return x

    def node(inputs: list, level: int):
        target = sides[LEVELS.index(level)]
        x = layers.Add()([resample(t, lvl, level, target) for t, lvl in inputs])
        x = layers.ReLU(6.0)(x)
        return bn(layers.SeparableConv2D(width, 3, padding="same")(x))

    sides = level_sides(side)
    image = tf.keras.Input((side, side, 3))
    stages = efficientnet_lite.stage_outputs(image, backbone)
    feats = [stages[2], stages[4], stages[6]]
    feats.append(resample(feats[-1], 5, 6, sides[3]))
    feats.append(resample(feats[-1], 6, 7, sides[4]))
    for _ in range(cells):
        p3, p4, p5, p6, p7 = feats
        td6 = node([(p6, 6), (p7, 7)], 6)
        td5 = node([(p5, 5), (td6, 6)], 5)
        td4 = node([(p4, 4), (td5, 5)], 4)
        out3 = node([(p3, 3), (td4, 4)], 3)
        out4 = node([(p4, 4), (td4, 4), (out3, 3)], 4)
        out5 = node([(p5, 5), (td5, 5), (out4, 4)], 5)
        out6 = node([(p6, 6), (td6, 6), (out5, 5)], 6)
        out7 = node([(p7, 7), (out6, 6)], 7)
        feats = [out3, out4, out5, out6, out7]

    def head(outputs_per_anchor: int, bias: float):
        convs = [layers.SeparableConv2D(width, 3, padding="same") for _ in range(head_repeats)]
        predict = layers.SeparableConv2D(ANCHORS_PER_CELL * outputs_per_anchor, 3, padding="same",
                                         bias_initializer=tf.keras.initializers.Constant(bias))
        per_level = []
        for x in feats:
            for conv in convs:
                x = layers.ReLU(6.0)(bn(conv(x)))
            per_level.append(layers.Reshape((-1, outputs_per_anchor))(predict(x)))
        return layers.Concatenate(axis=1)(per_level)

    boxes = head(4, 0.0)
    classes = head(NUM_CLASSES, -float(np.log((1 - 0.01) / 0.01)))
    return tf.keras.Model(image, [boxes, classes], name=name)


def _postprocess_signature() -> str:
    attrs = {"max_detections": f"i: {MAX_DETECTIONS}", "max_classes_per_detection": "i: 1",
             "use_regular_nms": "b: false", "nms_score_threshold": f"f: {SCORE_THRESHOLD}",
             "nms_iou_threshold": f"f: {IOU_THRESHOLD}", "num_classes": f"i: {NUM_CLASSES}",
             **{f"{axis}_scale": "f: 1.0" for axis in "yxhw"}}
    return " ".join(['name: "TFLite_Detection_PostProcess"'] +
                    [f'attr {{ key: "{k}" value {{ {v} }} }}' for k, v in attrs.items()])


def converter(name: str, saved_model_dir):
    """A TFLiteConverter for the whole detector: EfficientDet-Lite `name`, sigmoid on the class
    scores, TFLite_Detection_PostProcess (boxes, classes, scores, count of up to 25 detections);
    the SavedModel it converts is written to `saved_model_dir`."""
    import tensorflow as tf

    model = build(name)
    side = VARIANTS[name][1]
    anchor_boxes = tf.constant(anchors(side))

    @tf.function(experimental_implements=_postprocess_signature())
    def detection_postprocess(box_encodings, class_predictions, anchor_boxes):
        # The body is a placeholder the converter replaces by the custom op; only the signature counts.
        del box_encodings, class_predictions, anchor_boxes
        boxes = tf.constant(0.0, dtype=tf.float32, name="boxes")
        scores = tf.constant(0.0, dtype=tf.float32, name="scores")
        classes = tf.constant(0.0, dtype=tf.float32, name="classes")
        num_detections = tf.constant(0.0, dtype=tf.float32, name="num_detections")
        return boxes, classes, scores, num_detections

    def detect(image):
        box_codes, logits = model(image, training=False)
        return detection_postprocess(box_codes, tf.math.sigmoid(logits), anchor_boxes)

    # Through a SavedModel, as automl exports it, written by Keras's exporter (which saves the
    # weights it tracks, so the converter freezes them into constants).
    archive = tf.keras.export.ExportArchive()
    archive.track(model)
    archive.add_endpoint("serving_default", detect, input_signature=[tf.TensorSpec((1, side, side, 3), tf.float32)])
    archive.write_out(str(saved_model_dir), verbose=False)
    conv = tf.lite.TFLiteConverter.from_saved_model(str(saved_model_dir))
    conv.allow_custom_ops = True
    return conv
