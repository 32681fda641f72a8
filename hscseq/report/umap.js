(function(){
  var D=HSC_UMAP, cv=document.getElementById('umap-canvas'), ctx=cv.getContext('2d');
  var tip=document.getElementById('umap-tip'), sel=document.getElementById('umap-colour');
  var leg=document.getElementById('umap-legend'), n=D.x.length, pad=20;
  var minx=Math.min.apply(null,D.x), maxx=Math.max.apply(null,D.x);
  var miny=Math.min.apply(null,D.y), maxy=Math.max.apply(null,D.y);
  function px(i){return [pad+(D.x[i]-minx)/(maxx-minx||1)*(cv.width-2*pad),
                         cv.height-pad-(D.y[i]-miny)/(maxy-miny||1)*(cv.height-2*pad)];}
  function viridis(t){var s=[[68,1,84],[59,82,139],[33,145,140],[94,201,98],[253,231,37]];
    t=Math.max(0,Math.min(1,t))*4;var k=Math.min(3,Math.floor(t)),f=t-k;
    var c=s[k].map(function(v,j){return Math.round(v+(s[k+1][j]-v)*f);});return 'rgb('+c.join(',')+')';}
  var hs=D.hsc.filter(function(v){return v!==null;}), hmin=Math.min.apply(null,hs), hmax=Math.max.apply(null,hs);
  function colour(i){var m=sel.value;
    if(m==='sample')return D.sampleColours[D.sample[i]];
    if(m==='label')return D.labelColours[D.label[i]];
    if(m==='novel')return D.novel[i]?'#D55E00':'#BBBBBB';
    return D.hsc[i]===null?'#DDDDDD':viridis((D.hsc[i]-hmin)/((hmax-hmin)||1));}
  function legend(){var m=sel.value,h='';
    if(m==='sample')D.samples.forEach(function(s,j){h+='<span><i style="background:'+D.sampleColours[j]+'"></i>'+s+'</span>';});
    else if(m==='label')D.labels.forEach(function(s,j){h+='<span><i style="background:'+D.labelColours[j]+'"></i>'+s+'</span>';});
    else if(m==='novel')h='<span><i style="background:#D55E00"></i>novel</span><span><i style="background:#BBBBBB"></i>mapped</span>';
    else h='<span>HSC score '+hmin.toFixed(2)+' <i style="background:'+viridis(0)+'"></i><i style="background:'+viridis(.5)+'"></i><i style="background:'+viridis(1)+'"></i> '+hmax.toFixed(2)+'</span>';
    leg.innerHTML=h;}
  function draw(){ctx.clearRect(0,0,cv.width,cv.height);
    for(var i=0;i<n;i++){var p=px(i);ctx.fillStyle=colour(i);
      ctx.globalAlpha=D.cond[i]==='in_vivo'?0.55:0.9;ctx.beginPath();ctx.arc(p[0],p[1],2.2,0,6.2832);ctx.fill();}
    ctx.globalAlpha=1;legend();cv.setAttribute('data-drawn',String(n));}
  function nearest(mx,my){var best=-1,bd=64;for(var i=0;i<n;i++){var p=px(i),d=(p[0]-mx)*(p[0]-mx)+(p[1]-my)*(p[1]-my);
    if(d<bd){bd=d;best=i;}}return best;}
  cv.addEventListener('mousemove',function(e){var r=cv.getBoundingClientRect();
    var mx=(e.clientX-r.left)*cv.width/r.width,my=(e.clientY-r.top)*cv.height/r.height,i=nearest(mx,my);
    if(i<0){tip.style.display='none';return;}
    tip.textContent=D.id[i]+'\nsample: '+D.samples[D.sample[i]]+' ('+D.cond[i]+')\nlabel: '+D.labels[D.label[i]]+
      '\nHSC score: '+(D.hsc[i]===null?'NA':D.hsc[i])+'\nnovel: '+(D.novel[i]?'yes':'no');
    tip.style.left=(e.clientX-r.left+12)+'px';tip.style.top=(e.clientY-r.top+12)+'px';tip.style.display='block';});
  cv.addEventListener('mouseleave',function(){tip.style.display='none';});
  sel.addEventListener('change',draw);
  window.hscUmap={n:n,point:function(i){var p=px(i),r=cv.getBoundingClientRect();
    return [p[0]*r.width/cv.width,p[1]*r.height/cv.height];}};
  draw();
})();
