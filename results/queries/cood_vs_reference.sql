-- Our C-OOD levels next to the published ones (reference_cood_levels, by architecture name, kappa and level).
SELECT
    c.model_id,
    r.model_name AS reference_model,
    c.kappa,
    c.level,
    c.ood_auroc,
    r.ood_auroc AS reference_ood_auroc,
    c.ood_auroc - r.ood_auroc AS ood_auroc_difference,
    c.id_accuracy,
    r.id_accuracy AS reference_id_accuracy
FROM cood_levels AS c
JOIN models AS m USING (model_id)
JOIN reference_cood_levels AS r
    ON r.model_name = m.name AND r.kappa = c.kappa AND r.level = c.level
ORDER BY c.model_id, c.kappa, c.level
