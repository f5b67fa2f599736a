"""The class-incremental scenario and the methods built for it.

`config.scenario = "class_incremental"`: one head over every class of the
run, rows masked until their task arrives, no task id at test
(`head.ClassIncremental`). The methods, by `config.method`
(`mcl.continual.registry.CLASS_INCREMENTAL`): finetune, joint (the
oracle), lwf and ewc (`trained`); replay, icarl and derpp, on a
class-balanced memory (`rehearsal`, `memory`); ncm and ranpac, solved in
closed form on frozen-encoder records (`closed_form`).
"""
