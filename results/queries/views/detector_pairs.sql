-- detector_pairs: one row per (model, κ other than msp, severity level) where the κ and MSP both have an OOD AUROC
-- at that level (docs/comparisons.md, "Detectors against MSP"): the two AUROCs, the paired gain (κ − MSP, each at
-- its own level of that number) and the model's hardest level for the κ (the highest level of its pairs).
-- Pretrained models only, like every comparison.
SELECT
    c.model_id,
    c.kappa,
    c.level,
    c.ood_auroc,
    b.ood_auroc AS msp_ood_auroc,
    c.ood_auroc - b.ood_auroc AS gain,
    max(c.level) OVER (PARTITION BY c.model_id, c.kappa) AS hardest_level
FROM cood_levels AS c
JOIN cood_levels AS b ON b.model_id = c.model_id AND b.kappa = 'msp' AND b.level = c.level
JOIN models AS m ON m.model_id = c.model_id
WHERE c.kappa <> 'msp' AND m.pretrained AND c.ood_auroc IS NOT NULL AND b.ood_auroc IS NOT NULL
