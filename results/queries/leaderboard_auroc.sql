-- Selective prediction leaderboard by AUROC (MSP, no temperature scaling, every ID sample).
SELECT
    rank() OVER (ORDER BY s.auroc DESC) AS rank,
    s.model_id,
    m.params,
    s.accuracy,
    s.auroc,
    s.aurc,
    s.eaurc,
    s.augrc,
    s.ece15,
    s.sac99
FROM selective_metrics AS s
LEFT JOIN models AS m USING (model_id)
WHERE s.kappa = 'msp' AND NOT s.temperature_scaled AND s.subset = 'all'
ORDER BY rank, s.model_id
