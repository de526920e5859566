-- selective_ranked: one row per (κ, model) of the selective metrics without temperature scaling on every ID sample,
-- ranked by AUROC within the κ (1 = highest), with the model's parameter count. The leaderboards read it.
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
    s.ece15,
    s.sac99
FROM selective_metrics AS s
LEFT JOIN models AS m USING (model_id)
WHERE NOT s.temperature_scaled AND s.subset = 'all'
