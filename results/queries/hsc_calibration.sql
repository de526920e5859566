-- HSC threshold calibration: achieved test accuracy and coverage against the target 1 - alpha, per method.
SELECT
    model_id,
    method,
    alpha,
    delta,
    1 - alpha AS target_accuracy,
    accuracy_mean,
    accuracy_error,
    accuracy_mean >= 1 - alpha AS meets_target,
    coverage_mean,
    violation_rate,
    n_cal,
    repetitions
FROM hsc_calibration
ORDER BY model_id, alpha, method
