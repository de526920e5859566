-- Our selective metrics (MSP) next to the published HSC table's, per model and metric (reference_hsc_metrics.ours).
-- Published columns without _TS are on all images (our subset 'all'), _TS columns on the TS split ('ts_eval').
WITH ours AS (
    UNPIVOT (
        SELECT model_id, temperature_scaled, accuracy, auroc_ref, gamma_ref, aurc_ref, eaurc, ece15, mce15, aece_ref,
               conf_mean, conf_median, conf_gini, conf_variance, sac95, sac99, sac95_strict, sac99_strict, temperature
        FROM selective_metrics
        WHERE kappa = 'msp' AND subset = CASE WHEN temperature_scaled THEN 'ts_eval' ELSE 'all' END
    )
    ON accuracy, auroc_ref, gamma_ref, aurc_ref, eaurc, ece15, mce15, aece_ref, conf_mean, conf_median, conf_gini,
       conf_variance, sac95, sac99, sac95_strict, sac99_strict, temperature
    INTO NAME our_column VALUE our_value
)
SELECT
    o.model_id,
    rm.model_name AS reference_model,
    r.column_name AS reference_column,
    o.our_column,
    o.temperature_scaled,
    o.our_value,
    r.value AS reference_value,
    o.our_value - r.value AS difference,
    r.unit
FROM ours AS o
JOIN reference_models AS rm ON rm.model_id = o.model_id
JOIN reference_hsc_metrics AS r
    ON r.model_name = rm.model_name AND r.ours = 'selective_metrics.' || o.our_column
    AND r.temperature_scaled = o.temperature_scaled
ORDER BY o.model_id, r.column_name
