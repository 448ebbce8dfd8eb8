"""The library behind the top-level jobs, one folder per stage of the pipeline.

    data/        dataset layouts on disk -> TFRecords (conversion), the record schema and its
                 one decoder (records), tf.data pipelines, augmentation, the demo scenes
    training/    the training job (trainer: train()), its loop, graph, losses, optimisers,
                 initialisation from checkpoints, data parallelism, monitoring, Keras weights
    evaluation/  metrics (the FCN reference scorer), scoring loops, reports, CRF tuning
    inference/   a run's model on images (predictor), prediction on image files and video
    deploy/      export (SavedModel, frozen graph, ONNX, TFLite), parity, latency, operation
                 counts for a compute budget

Cross-cutting, at the top: config (the experiment's keys), rundir (the run directory's
layout, one home), errors (what a job reports as one line), cli (what scripts share),
runtime (TensorFlow and session set-up), startup (a quiet TensorFlow import), fileio (atomic
writes), crf (dense CRF refinement), visualization (colours and pictures), upsampling
(bilinear kernels). Networks are in nets/.
"""
