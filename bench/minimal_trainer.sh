#!/bin/sh
# The smallest honest stand-in trainer run, for the operator benchmark with 1000 requests:
# no progress events, only the final TrainerReport in the termination message, written by
# a shell in a few milliseconds instead of a Python start. The Job still runs a Pod to
# completion, and the operator still reads the report and publishes the output MLModel.
printf '%s' '{"type":"report","protocolVersion":"v1alpha1","outcome":"SUCCEEDED","message":"minimal stand-in run","modelPerformanceTraining":[{"performanceMetric":"ACCURACY","performanceScore":0.81}],"modelPerformanceValidation":[{"performanceMetric":"ACCURACY","performanceScore":0.81}],"modelConfidenceIndication":90,"trainableParameters":1000,"totalParameters":100000,"trainedTensors":4,"artifactFormat":"PEFT_ADAPTER","device":"cpu","precision":"FP32","epochsCompleted":1,"steps":5,"durationSeconds":0.0,"stopReason":"MAX_EPOCHS"}' > "${AIML_STANDIN_TERMINATION_LOG:-/dev/termination-log}"
