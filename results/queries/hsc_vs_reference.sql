-- Our hAURC and gain per HSC rule next to the published HSC table (reference_hsc_metrics), by model id.
SELECT
    h.model_id,
    rm.model_name AS reference_model,
    h.rule,
    h.risk_type,
    h.temperature_scaled,
    h.haurc,
    a.value AS reference_haurc,
    h.haurc - a.value AS haurc_difference,
    h.gain,
    g.value AS reference_gain
FROM hsc_rules AS h
JOIN reference_models AS rm ON rm.model_id = h.model_id
JOIN reference_hsc_metrics AS a
    ON a.model_name = rm.model_name AND a.metric = 'hAURC' AND a.rule = h.rule AND a.risk_type = h.risk_type
    AND a.temperature_scaled = h.temperature_scaled
LEFT JOIN reference_hsc_metrics AS g
    ON g.model_name = rm.model_name AND g.metric = 'Gain' AND g.rule = h.rule AND g.risk_type = h.risk_type
    AND g.temperature_scaled = h.temperature_scaled
ORDER BY h.model_id, h.rule, h.risk_type, h.temperature_scaled
