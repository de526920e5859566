-- Per-family averages (models.family; docs/models.md "Training regime"), MSP, no TS.
SELECT
    coalesce(m.family, regexp_extract(m.name, '^[A-Za-z]+')) AS family,
    count(*) AS models,
    avg(s.accuracy) AS mean_accuracy,
    avg(s.auroc) AS mean_auroc,
    avg(s.aurc) AS mean_aurc,
    avg(s.ece15) AS mean_ece15
FROM selective_metrics AS s
JOIN models AS m USING (model_id)
WHERE s.kappa = 'msp' AND NOT s.temperature_scaled AND s.subset = 'all'
GROUP BY ALL
ORDER BY mean_auroc DESC, family
