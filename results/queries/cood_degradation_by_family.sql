-- C-OOD degradation per architecture family: OOD AUROC (MSP) by severity level over each family's models.
-- One row per (origin, family, level): the family's models with a value at that level, their mean, quantiles and
-- range, and mean_drop, the mean of each model's AUROC at its easiest level minus its AUROC at this level.
WITH
levels AS (
    SELECT 'ours' AS origin, c.model_id AS model, m.family, c.level, c.ood_auroc
    FROM cood_levels AS c
    JOIN models AS m ON m.model_id = c.model_id
    WHERE c.kappa = 'msp' AND m.pretrained AND c.ood_auroc IS NOT NULL
    UNION ALL
    SELECT 'published', c.model_name, r.family, c.level, c.ood_auroc
    FROM reference_cood_levels AS c
    LEFT JOIN reference_models AS r ON r.model_name = c.model_name
    WHERE c.kappa = 'msp' AND c.ood_auroc IS NOT NULL
),
dropped AS (
    SELECT *, first_value(ood_auroc) OVER (PARTITION BY origin, model ORDER BY level) - ood_auroc AS drop_from_easiest
    FROM levels
)
SELECT
    origin, family, level,
    count(*) AS models,
    avg(ood_auroc) AS mean_ood_auroc,
    min(ood_auroc) AS min_ood_auroc,
    quantile_cont(ood_auroc, 0.25) AS q25_ood_auroc,
    quantile_cont(ood_auroc, 0.5) AS median_ood_auroc,
    quantile_cont(ood_auroc, 0.75) AS q75_ood_auroc,
    max(ood_auroc) AS max_ood_auroc,
    avg(drop_from_easiest) AS mean_drop
FROM dropped
GROUP BY origin, family, level
ORDER BY origin, family NULLS LAST, level
