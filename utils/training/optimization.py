"""Learning-rate schedules, optimisers and the train op (clipping, lr factors, stages,
precision)."""
import tensorflow.compat.v1 as tf

from nets.fcn import HEAD_SCOPE
from utils.errors import ConfigError


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


def build_optimizer(config, lr, suffix=''):
    """The config's optimizer at learning rate `lr` (a tensor); `suffix` names the slots of a
    second one (`VAR/Adam_x0.1`)."""
    if config.optimizer == 'momentum':
        optimizer = tf.train.MomentumOptimizer(lr, config.momentum, name='Momentum' + suffix)
    elif config.optimizer == 'rmsprop':
        optimizer = tf.train.RMSPropOptimizer(lr, momentum=config.momentum,
                                              name='RMSProp' + suffix)
    else:
        optimizer = tf.train.AdamOptimizer(lr, name='Adam' + suffix)
    if config.precision == 'mixed_float16':
        # float16 gradients underflow without loss scaling; the graph rewrite adds the casts.
        optimizer = tf.mixed_precision.enable_mixed_precision_graph_rewrite(optimizer, 'dynamic')
    return optimizer


def lr_factor(variable, config):
    """The learning-rate factor of `variable`: bias_lr_multiplier for biases, times
    backbone_lr_multiplier outside the head."""
    name = variable.op.name
    factor = config.bias_lr_multiplier if name.endswith('/biases') else 1.0
    if not name.startswith(HEAD_SCOPE + '/'):
        factor *= config.backbone_lr_multiplier
    return factor


class Optimizers:
    """The config's optimizer, and one more per learning-rate factor other than 1.

    With momentum SGD, scaling a gradient scales its update exactly, so factors scale the
    gradients. Adam (exactly) and RMSProp (once its running average has adapted) divide the
    gradient's scale away, so each factor gets an optimizer of its own at lr x factor, whose
    slots are named after the factor (`VAR/Adam_x0.1`): a run resumed with another factor
    starts those slots afresh instead of inheriting another group's.
    """

    def __init__(self, config, lr):
        self.config, self.lr = config, lr
        self.main = build_optimizer(config, lr)
        self._scaled = {}

    def for_factor(self, factor):
        if factor == 1.0 or self.config.optimizer == 'momentum':
            return self.main
        if factor not in self._scaled:  # mixed_float16: refused by Config.validate
            self._scaled[factor] = build_optimizer(self.config, self.lr * factor,
                                                   '_x%g' % factor)
        return self._scaled[factor]


def in_scopes(variables, scopes):
    """The variables under any of `scopes` (all of them when `scopes` is empty)."""
    if not scopes:
        return list(variables)
    prefixes = [s.rstrip('/') + '/' for s in scopes]
    return [v for v in variables if any(v.op.name.startswith(p) for p in prefixes)]


def build_train_op(optimizers, loss, global_step, variables, config):
    """The update of `variables` (an Optimizers'), with optional gradient clipping and each
    variable's learning-rate factor (lr_factor); increments global_step once."""
    grads_and_vars = [(g, v) for g, v in optimizers.main.compute_gradients(loss, variables)
                      if g is not None]
    if not grads_and_vars:
        raise ConfigError('none of the %d variables to train has a gradient from the loss; '
                          'check trainable_scopes and stage1_trainable_scopes' % len(variables))
    if config.gradient_clip_norm > 0:
        grads, variables_ = zip(*grads_and_vars)
        grads, _ = tf.clip_by_global_norm(grads, config.gradient_clip_norm)
        grads_and_vars = list(zip(grads, variables_))
    groups = {}  # optimizer -> its (gradient, variable) pairs, in first-seen order
    for g, v in grads_and_vars:
        factor = lr_factor(v, config)
        optimizer = optimizers.for_factor(factor)
        if optimizer is optimizers.main and factor != 1.0:
            g = g * factor  # momentum SGD: exact
        groups.setdefault(optimizer, []).append((g, v))
    update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS)
    with tf.control_dependencies(update_ops):
        # The first group's optimizer increments the step (with a loss scale: as it decides).
        updates = [optimizer.apply_gradients(pairs, global_step=global_step if i == 0 else None)
                   for i, (optimizer, pairs) in enumerate(groups.items())]
        return tf.group(*updates)


def session_rewrites(proto, precision):
    """Turns on the graph rewrite of `precision` in a tf.ConfigProto (bfloat16 on CPU)."""
    if precision == 'mixed_bfloat16':
        from tensorflow.core.protobuf import rewriter_config_pb2
        proto.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = (
            rewriter_config_pb2.RewriterConfig.ON)
    return proto
