-- regime_members: which regimes each model of model_population belongs to (docs/comparisons.md, "Regimes"):
-- one row per (origin, model, regime), with the regime's display position.
SELECT p.origin, p.model, g.regime, g.position
FROM model_population AS p
CROSS JOIN (
    SELECT * FROM (VALUES ('all', 1), ('plain', 2), ('distilled', 3), ('in21k', 4), ('clip', 5), ('semi_supervised', 6),
                          ('self_supervised', 7), ('adversarial', 8)) AS g(regime, position)
) AS g
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
