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
membership AS (  -- regimes: the shared view regime_members (results/queries/views/)
    SELECT p.*, g.regime, g.position
    FROM grouped AS p
    JOIN regime_members AS g ON g.origin = p.origin AND g.model = p.model
),
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
