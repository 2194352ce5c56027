"""VCO Lab's PyTorch worker for vco-lab train --backend torch (see worker.py)."""
