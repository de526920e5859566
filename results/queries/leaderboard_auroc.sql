-- Selective prediction leaderboard by AUROC (MSP, no temperature scaling, every ID sample).
SELECT rank, model_id, params, accuracy, auroc, aurc, eaurc, augrc, ece15, sac99
FROM selective_ranked
WHERE kappa = 'msp'
ORDER BY rank, model_id
