"""Library code for the FCN training suite: data, preprocessing, losses, metrics, CRF, I/O."""
