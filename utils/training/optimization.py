"""Learning-rate schedules, optimisers and the train op (clipping, bias lr, stages, precision)."""
import tensorflow.compat.v1 as tf


def learning_rate(config, global_step):
    """Scalar lr tensor: 'fixed', 'step' (x lr_decay_rate every lr_decay_steps) or 'poly'
    ((1 - step / max_steps) ** lr_power), multiplied by a linear warm-up over warmup_steps."""
    step = tf.cast(global_step, tf.float32)
    base = tf.constant(config.learning_rate, tf.float32)
    if config.lr_schedule == 'step':
        lr = base * tf.pow(config.lr_decay_rate, tf.floor(step / config.lr_decay_steps))
    elif config.lr_schedule == 'poly':
        progress = tf.minimum(step / float(config.max_steps), 1.0)
        lr = base * tf.pow(1.0 - progress, config.lr_power)
    else:
        lr = base
    if config.warmup_steps:
        lr *= tf.minimum((step + 1.0) / float(config.warmup_steps), 1.0)
    return tf.identity(lr, name='learning_rate')


def build_optimizer(config, lr):
    if config.optimizer == 'momentum':
        optimizer = tf.train.MomentumOptimizer(lr, config.momentum)
    elif config.optimizer == 'rmsprop':
        optimizer = tf.train.RMSPropOptimizer(lr, momentum=config.momentum)
    else:
        optimizer = tf.train.AdamOptimizer(lr)
    if config.precision == 'mixed_float16':
        # float16 gradients underflow without loss scaling; the graph rewrite adds the casts.
        optimizer = tf.mixed_precision.enable_mixed_precision_graph_rewrite(optimizer, 'dynamic')
    return optimizer


def in_scopes(variables, scopes):
    """The variables under any of `scopes` (all of them when `scopes` is empty)."""
    if not scopes:
        return list(variables)
    prefixes = [s.rstrip('/') + '/' for s in scopes]
    return [v for v in variables if any(v.op.name.startswith(p) for p in prefixes)]


def build_train_op(optimizer, loss, global_step, variables, config):
    """minimize() with optional gradient clipping and a larger lr for biases."""
    grads_and_vars = [(g, v) for g, v in optimizer.compute_gradients(loss, variables)
                      if g is not None]
    if config.gradient_clip_norm > 0:
        grads, variables_ = zip(*grads_and_vars)
        grads, _ = tf.clip_by_global_norm(grads, config.gradient_clip_norm)
        grads_and_vars = list(zip(grads, variables_))
    if config.bias_lr_multiplier != 1.0:
        grads_and_vars = [(g * config.bias_lr_multiplier if v.op.name.endswith('/biases') else g,
                           v) for g, v in grads_and_vars]
    update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    with tf.control_dependencies(update_ops):
        return optimizer.apply_gradients(grads_and_vars, global_step=global_step)


def session_rewrites(proto, precision):
    """Turns on the graph rewrite of `precision` in a tf.ConfigProto (bfloat16 on CPU)."""
    if precision == 'mixed_bfloat16':
        from tensorflow.core.protobuf import rewriter_config_pb2
        proto.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = (
            rewriter_config_pb2.RewriterConfig.ON)
    return proto
