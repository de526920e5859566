-- Metric vs accuracy (and vs AUROC) per model, ours and published, with Spearman's rho per (origin, x, metric).
-- One row per (origin, model, x_metric, metric) where both values exist (MSP, no TS): x_metric is accuracy or auroc,
-- metric is auroc, aurc, ece15 or cood_mean_auroc (C-OOD AUROC averaged over the severity levels). x_rank and rank
-- are average ranks (ties share their mean rank), ascending, within (origin, x_metric, metric); spearman is the
-- Pearson correlation of the two ranks there. Kendall's tau-b and bootstrap intervals: uebench compare.
WITH
-- population:begin (the same text in every comparison query that reads it; tests/test_results_comparisons.py)
population AS (
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
),
-- population:end
xs AS (
    UNPIVOT (SELECT origin, model, model_id, family, pretraining, accuracy, auroc FROM population)
    ON accuracy, auroc INTO NAME x_metric VALUE x_value
),
ys AS (
    UNPIVOT (SELECT origin, model, auroc, aurc, ece15, cood_mean_auroc FROM population)
    ON auroc, aurc, ece15, cood_mean_auroc INTO NAME metric VALUE value
),
ranked AS (
    SELECT
        xs.*, ys.metric, ys.value,
        rank() OVER (PARTITION BY xs.origin, xs.x_metric, ys.metric ORDER BY xs.x_value)
            + (count(*) OVER (PARTITION BY xs.origin, xs.x_metric, ys.metric, xs.x_value) - 1) / 2 AS x_rank,
        rank() OVER (PARTITION BY xs.origin, xs.x_metric, ys.metric ORDER BY ys.value)
            + (count(*) OVER (PARTITION BY xs.origin, xs.x_metric, ys.metric, ys.value) - 1) / 2 AS rank
    FROM xs
    JOIN ys ON ys.origin = xs.origin AND ys.model = xs.model AND ys.metric <> xs.x_metric
)
SELECT
    origin, model, model_id, family, pretraining, x_metric, x_value, metric, value, x_rank, rank,
    count(*) OVER pair AS n,
    corr(x_rank, rank) OVER pair AS spearman
FROM ranked
WINDOW pair AS (PARTITION BY origin, x_metric, metric)
ORDER BY origin, x_metric, metric, x_value DESC, model
