-- HSC gain per training regime: each hierarchical rule's % hAURC gain over Selective, by regime, ours and published.
-- One row per (origin, regime, rule, risk_type, temperature_scaled) over the pretrained models of the regime
-- (regimes as in regime_groups): models with a gain, its mean, quantiles and range, and the mean hAURC of the rule.
WITH
grouped AS (
    SELECT
        'ours' AS origin, h.model_id AS model, m.pretraining, m.distilled, m.self_supervised, m.semi_supervised,
        m.clip, m.adversarial, h.rule, h.risk_type, h.temperature_scaled, h.haurc, h.gain
    FROM hsc_rules AS h
    JOIN models AS m ON m.model_id = h.model_id
    WHERE m.pretrained AND h.rule <> 'selective'
    UNION ALL
    SELECT
        'published', a.model_name, r.pretraining, r.distilled, r.self_supervised, r.semi_supervised, r.clip,
        r.adversarial, a.rule, a.risk_type, a.temperature_scaled, a.value, g.value
    FROM reference_hsc_metrics AS a
    JOIN reference_models AS r ON r.model_name = a.model_name
    LEFT JOIN reference_hsc_metrics AS g
        ON g.model_name = a.model_name AND g.metric = 'Gain' AND g.rule = a.rule AND g.risk_type = a.risk_type
        AND g.temperature_scaled = a.temperature_scaled
    WHERE a.metric = 'hAURC' AND a.rule <> 'selective'
),
-- regimes:begin (the same text in every query that groups by regime; tests/test_results_comparisons.py)
regimes AS (
    SELECT * FROM (VALUES ('all', 1), ('plain', 2), ('distilled', 3), ('in21k', 4), ('clip', 5), ('semi_supervised', 6),
                          ('self_supervised', 7), ('adversarial', 8)) AS g(regime, position)
),
membership AS (
    SELECT p.*, g.regime, g.position
    FROM grouped AS p
    CROSS JOIN regimes AS g
    WHERE CASE g.regime
        WHEN 'all' THEN true
        WHEN 'plain' THEN p.pretraining = 'in1k'
            AND NOT (p.distilled OR p.self_supervised OR p.semi_supervised OR p.clip OR p.adversarial)
        WHEN 'distilled' THEN p.distilled
        WHEN 'in21k' THEN p.pretraining IN ('in21k', 'in22k', 'in12k')
        WHEN 'clip' THEN p.clip
        WHEN 'semi_supervised' THEN p.semi_supervised
        WHEN 'self_supervised' THEN p.self_supervised
        WHEN 'adversarial' THEN p.adversarial
    END
),
-- regimes:end
summary AS (
    SELECT
        origin, regime, rule, risk_type, temperature_scaled,
        count(gain) AS models,
        avg(gain) AS mean_gain,
        min(gain) AS min_gain,
        quantile_cont(gain, 0.25) AS q25_gain,
        quantile_cont(gain, 0.5) AS median_gain,
        quantile_cont(gain, 0.75) AS q75_gain,
        max(gain) AS max_gain,
        avg(haurc) AS mean_haurc,
        min(position) AS position
    FROM membership
    GROUP BY origin, regime, rule, risk_type, temperature_scaled
)
SELECT * EXCLUDE (position)
FROM summary
ORDER BY origin, risk_type, temperature_scaled, rule, position
