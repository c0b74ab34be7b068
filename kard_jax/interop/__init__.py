"""Running our tasks under T5X: what its gin files bind (`t5x_support`) and the converter of
`t5x.infer`'s Sci-CoT stage-1 output into the rationale files stage 2 reads (`t5x_rationales`)."""
