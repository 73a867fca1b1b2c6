"""Model evaluation: discrimination, calibration and ranking metrics for binary classifiers."""
