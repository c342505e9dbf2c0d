]@
trainerB5

nvidia.com/gpu
1

cpu
4
memory
16Gi²
nvidia.com/gpuExists