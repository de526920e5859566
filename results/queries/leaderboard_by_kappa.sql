-- Selective prediction leaderboard of each κ by AUROC (no temperature scaling, every ID sample), ranked within the κ.
-- One row per (κ, model); the report shows the feature-space detectors' (κ det_<name>) first rows. ECE is left
-- out: it is NULL for a κ whose score is not a probability (the detectors).
SELECT
    s.kappa,
    rank() OVER (PARTITION BY s.kappa ORDER BY s.auroc DESC) AS rank,
    s.model_id,
    m.params,
    s.accuracy,
    s.auroc,
    s.aurc,
    s.eaurc,
    s.augrc,
    s.sac99
FROM selective_metrics AS s
LEFT JOIN models AS m USING (model_id)
WHERE NOT s.temperature_scaled AND s.subset = 'all'
ORDER BY s.kappa, rank, s.model_id
