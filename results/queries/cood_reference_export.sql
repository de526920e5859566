-- Our C-OOD levels in the published CSV's column format (cood.md section 4), kappa written the published way.
SELECT
    c.level AS "severity level",
    round(c.percentile, 1) AS percentile,
    c.ood_auroc AS "ood-auroc",
    c.ood_avg_conf,
    c.id_accuracy AS "id-acc",
    c.id_auroc AS "id-auroc",
    c.id_avg_conf,
    c.model_id AS "model name",
    CASE c.kappa
        WHEN 'msp' THEN 'softmax'
        WHEN 'neg_entropy' THEN 'entropy'
        WHEN 'mcd_neg_entropy' THEN 'mcd_entropy'
        WHEN 'odin' THEN 'odin_temperature-2_noise_mag-1e-05'
        ELSE c.kappa
    END AS "confidence function",
    c.model_id || '-' || "confidence function" AS "model name - confidence function"
FROM cood_levels AS c
ORDER BY "model name", "confidence function", "severity level"
