-- model_population: one row per model of the comparisons' population, ours and published (docs/comparisons.md,
-- "What the queries read"): origin, model, model_id, architecture, the training regime and the per-model metrics.
SELECT
    'ours' AS origin, m.model_id AS model, m.model_id, m.name AS architecture, m.family, m.pretraining,
    m.distilled, m.self_supervised, m.semi_supervised, m.clip, m.adversarial,
    s.accuracy, s.auroc, s.aurc, s.ece15, c.cood_mean_auroc
FROM models AS m
LEFT JOIN selective_metrics AS s
    ON s.model_id = m.model_id AND s.kappa = 'msp' AND NOT s.temperature_scaled AND s.subset = 'all'
LEFT JOIN (
    SELECT model_id, avg(ood_auroc) AS cood_mean_auroc FROM cood_levels WHERE kappa = 'msp' GROUP BY model_id
) AS c ON c.model_id = m.model_id
WHERE m.pretrained
UNION ALL
SELECT
    'published', r.model_name, r.model_id,
    coalesce(nullif(regexp_extract(r.model_id, '^(timm|torchvision|open_clip|efficientnet_lite)-([^.]+)', 2), ''),
             split_part(r.model_name, '.', 1)),
    r.family, r.pretraining, r.distilled, r.self_supervised, r.semi_supervised, r.clip, r.adversarial,
    coalesce(h.accuracy, c.id_accuracy), coalesce(h.auroc, c.id_auroc), h.aurc, h.ece15, c.cood_mean_auroc
FROM reference_models AS r
LEFT JOIN (
    SELECT
        model_name,
        any_value(value) FILTER (WHERE column_name = 'Accuracy') AS accuracy,
        any_value(value) FILTER (WHERE column_name = 'AUROC') AS auroc,
        any_value(value) FILTER (WHERE column_name = 'AURC') AS aurc,
        any_value(value) FILTER (WHERE column_name = 'ECE_15') AS ece15
    FROM reference_hsc_metrics
    GROUP BY model_name
) AS h ON h.model_name = r.model_name
LEFT JOIN (
    SELECT model_name, avg(ood_auroc) AS cood_mean_auroc, any_value(id_accuracy) AS id_accuracy,
           any_value(id_auroc) AS id_auroc
    FROM reference_cood_levels
    WHERE kappa = 'msp'
    GROUP BY model_name
) AS c ON c.model_name = r.model_name
