"""The PyTorch twin of `gradguard train --set model.kind=transformer` (its defaults: width 64,
4 heads, 2 pre-norm blocks with a 4x feed-forward, batch 64 x 64 characters, AdamW 3e-3,
global-norm clipping at 5): the median step time over 20 steps after 3 warm-up steps, on 2
threads. The GradGuard side is timed from the command line (BENCHMARKS.md gives both commands).

    python3 Benchmarks/transformer_twin.py
"""
import time, torch, torch.nn as nn
torch.set_num_threads(2); torch.manual_seed(0)
V,D,H,L,T,B=65,64,4,2,64,64
class M(nn.Module):
    def __init__(s):
        super().__init__()
        s.tok=nn.Embedding(V,D); s.pos=nn.Parameter(torch.randn(T,D)*0.02)
        s.blocks=nn.ModuleList([nn.TransformerEncoderLayer(D,H,4*D,0.0,activation="gelu",batch_first=True,norm_first=True) for _ in range(L)])
        s.norm=nn.LayerNorm(D); s.head=nn.Linear(D,V)
    def forward(s,x):
        h=s.tok(x)+s.pos[:x.shape[1]]
        mask=nn.Transformer.generate_square_subsequent_mask(x.shape[1])
        for b in s.blocks: h=b(h,src_mask=mask,is_causal=True)
        return s.head(s.norm(h))
m=M(); opt=torch.optim.AdamW(m.parameters(),lr=3e-3)
x=torch.randint(0,V,(B,T)); y=torch.randint(0,V,(B,T))
def step():
    opt.zero_grad(); out=m(x); loss=nn.functional.cross_entropy(out.reshape(-1,V),y.reshape(-1)); loss.backward()
    torch.nn.utils.clip_grad_norm_(m.parameters(),5.0); opt.step()
for _ in range(3): step()
ts=[]
for _ in range(20):
    t=time.perf_counter(); step(); ts.append(time.perf_counter()-t)
ts.sort(); print("pytorch median step ms", 1000*ts[10])
