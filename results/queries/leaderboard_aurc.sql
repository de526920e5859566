-- Selective prediction leaderboard by AURC, lower is better (MSP, no temperature scaling, all samples).
SELECT
    rank() OVER (ORDER BY s.aurc ASC) AS rank,
    s.model_id,
    s.accuracy,
    s.aurc,
    s.eaurc,
    s.augrc,
    s.auroc,
    s.sac95,
    s.sac99
FROM selective_metrics AS s
WHERE s.kappa = 'msp' AND NOT s.temperature_scaled AND s.subset = 'all'
ORDER BY rank, s.model_id
