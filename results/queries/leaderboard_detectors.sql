-- Selective prediction leaderboard of each feature-space detector κ (det_<name>) by AUROC (no TS, every ID sample).
-- One row per (κ, model), ranked within the κ; ECE is not a detector's metric (its score is not a probability).
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
WHERE starts_with(s.kappa, 'det_') AND NOT s.temperature_scaled AND s.subset = 'all'
ORDER BY s.kappa, rank, s.model_id
