-- Hierarchical selective classification: hAURC of each rule and its % gain over Selective (0/1 risk, no TS).
SELECT
    model_id,
    rule,
    haurc,
    gain,
    rank() OVER (PARTITION BY model_id ORDER BY haurc ASC) AS rank_in_model
FROM hsc_rules
WHERE risk_type = '01' AND NOT temperature_scaled
ORDER BY gain DESC NULLS LAST, model_id, rule
