-- C-OOD detection per severity level: OOD AUROC and FPR@95 for every (model, kappa), level 0 = easiest.
SELECT
    model_id,
    kappa,
    level,
    percentile,
    severity,
    ood_auroc,
    fpr95,
    ood_avg_conf,
    id_accuracy,
    id_auroc
FROM cood_levels
ORDER BY model_id, kappa, level
