-- Metric vs accuracy (and vs AUROC) per model, ours and published, with Spearman's rho per (origin, x, metric).
-- One row per (origin, model, x_metric, metric) where both values exist (MSP, no TS): x_metric is accuracy or auroc,
-- metric is auroc, aurc, ece15 or cood_mean_auroc (C-OOD AUROC averaged over the severity levels). x_rank and rank
-- are average ranks (ties share their mean rank), ascending, within (origin, x_metric, metric); spearman is the
-- Pearson correlation of the two ranks there. Kendall's tau-b and bootstrap intervals: uebench compare.
WITH
population AS (SELECT * FROM model_population),  -- the shared view (results/queries/views/)
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
