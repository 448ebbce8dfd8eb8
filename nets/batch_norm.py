"""Batch normalisation with tf-slim's variable names, for slim's `normalizer_fn`.

`slim.batch_norm` fails on TensorFlow >= 2.15 (its non-fused path imports a module tf-keras no
longer has; its fused path uses the removed `ops.Tensor`). This function creates the same
variables (`BatchNorm/beta`, `gamma`, `moving_mean`, `moving_variance`), so published MobileNet
and Inception checkpoints load, and registers its moving-average updates in UPDATE_OPS.

Across replicas (tf.distribute), each replica normalises with its own batch statistics; the
moving averages are mirrored variables whose updates are averaged across replicas.
"""
import tensorflow.compat.v1 as tf
import tf_slim as slim


@slim.add_arg_scope
def batch_norm(inputs, decay=0.999, epsilon=0.001, center=True, scale=False, is_training=True,
               trainable=True, scope=None, **unused):
    """[batch, h, w, c] -> normalised over batch, h, w; moving statistics for inference."""
    with tf.variable_scope(scope, 'BatchNorm', [inputs]):
        depth = inputs.shape[-1]
        dtype = tf.float32
        beta = (tf.get_variable('beta', [depth], dtype, tf.zeros_initializer(),
                                trainable=trainable,
                                collections=[tf.GraphKeys.GLOBAL_VARIABLES,
                                             tf.GraphKeys.MODEL_VARIABLES])
                if center else None)
        gamma = (tf.get_variable('gamma', [depth], dtype, tf.ones_initializer(),
                                 trainable=trainable,
                                 collections=[tf.GraphKeys.GLOBAL_VARIABLES,
                                              tf.GraphKeys.MODEL_VARIABLES])
                 if scale else None)
        moving_collections = [tf.GraphKeys.GLOBAL_VARIABLES, tf.GraphKeys.MODEL_VARIABLES,
                              tf.GraphKeys.MOVING_AVERAGE_VARIABLES]
        moving_mean = tf.get_variable('moving_mean', [depth], dtype, tf.zeros_initializer(),
                                      trainable=False, collections=moving_collections,
                                      synchronization=tf.VariableSynchronization.ON_READ,
                                      aggregation=tf.VariableAggregation.MEAN)
        moving_variance = tf.get_variable('moving_variance', [depth], dtype,
                                          tf.ones_initializer(), trainable=False,
                                          collections=moving_collections,
                                          synchronization=tf.VariableSynchronization.ON_READ,
                                          aggregation=tf.VariableAggregation.MEAN)
        x = tf.cast(inputs, tf.float32)
        # The fused kernel: one pass on CPU and GPU, and at inference grappler folds it into
        # the preceding convolution (oneDNN _FusedConv2D).
        scale = gamma if gamma is not None else tf.ones([depth], dtype)
        offset = beta if beta is not None else tf.zeros([depth], dtype)
        if is_training:
            outputs, mean, variance = tf.nn.fused_batch_norm(x, scale, offset, epsilon=epsilon,
                                                             is_training=True)
            # fused_batch_norm returns the unbiased variance for the moving average.
            tf.add_to_collection(tf.GraphKeys.UPDATE_OPS,
                                 tf.assign_sub(moving_mean, (moving_mean - mean) * (1 - decay)))
            tf.add_to_collection(tf.GraphKeys.UPDATE_OPS, tf.assign_sub(
                moving_variance, (moving_variance - variance) * (1 - decay)))
        else:
            outputs, _, _ = tf.nn.fused_batch_norm(x, scale, offset, moving_mean, moving_variance,
                                                   epsilon=epsilon, is_training=False)
        return tf.cast(outputs, inputs.dtype)
