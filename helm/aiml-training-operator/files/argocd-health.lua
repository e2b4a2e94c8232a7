-- Argo CD health check for MLTrainingRequest and MLFineTuningRequest (group aiml.mns.io).
-- Register it in argocd-cm under resource.customizations.health.aiml.mns.io_MLTrainingRequest
-- and resource.customizations.health.aiml.mns.io_MLFineTuningRequest.
local hs = {}
if obj.status == nil or obj.status.requestStatus == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to accept the request"
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= nil
    and obj.status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "The operator has not yet seen the latest spec"
  return hs
end
local progress = nil
if obj.status.process ~= nil then
  progress = obj.status.process.progressStatus
end
if progress ~= nil and progress.status == "FAILED" then
  hs.status = "Degraded"
  hs.message = progress.resultStateInfo or "Training failed"
  return hs
end
if obj.status.conditions ~= nil then
  for _, condition in ipairs(obj.status.conditions) do
    if condition.type == "Authorized" and condition.status == "False" then
      hs.status = "Degraded"
      hs.message = condition.message or "The consumer is not authorized"
      return hs
    end
  end
end
local state = obj.status.requestStatus
if state == "FINISHED" then
  hs.status = "Healthy"
  hs.message = "Training finished"
elseif state == "CANCELLED" then
  hs.status = "Healthy"
  hs.message = "Cancelled by the consumer"
elseif state == "SUSPENDED" then
  hs.status = "Suspended"
  hs.message = "Suspended by the consumer"
else
  hs.status = "Progressing"
  if progress ~= nil and progress.progressPercentage ~= nil then
    hs.message = state .. " " .. tostring(progress.progressPercentage) .. "%"
  else
    hs.message = state
  end
end
return hs
