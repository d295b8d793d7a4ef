"""The HTML report's inline stylesheet and script (sortable tables, one filter box for every table)."""

CSS = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:13px}
th,td{border:1px solid #ccc;padding:3px 6px;text-align:left;vertical-align:top}
th{background:#f0f0f0;cursor:pointer;user-select:none}
th.asc::after{content:" \\25B2"}th.desc::after{content:" \\25BC"}
td.v-fail,td.v-failed{color:#b00020;font-weight:600}td.v-pass{color:#1b5e20}td.v-incomplete{color:#8a6d00}
td.s-critical,td.s-high{background:#fde0e0}td.s-medium{background:#fff3cd}
td.p-open{background:#e3f5e1}td.p-partial{background:#fff3cd}td.p-closed,td.p-restricted{background:#fde0e0}
svg .bar{fill:#4a78b5}svg text{font-size:12px;fill:#222}
tr.hidden{display:none}footer{color:#666;margin-top:2em}
"""

JS = """
(function(){
  function key(td, type){var v=td.getAttribute('data-v');if(type==='num'){var n=parseFloat(v);return isNaN(n)?-Infinity:n;}return v.toLowerCase();}
  document.querySelectorAll('table.sortable th').forEach(function(th){
    th.addEventListener('click',function(){
      var table=th.closest('table'),body=table.tBodies[0],col=+th.getAttribute('data-col'),type=th.getAttribute('data-type');
      var asc=!th.classList.contains('asc');
      table.querySelectorAll('th').forEach(function(o){o.classList.remove('asc','desc');});
      th.classList.add(asc?'asc':'desc');
      var rows=Array.prototype.slice.call(body.rows);
      rows.sort(function(a,b){var x=key(a.cells[col],type),y=key(b.cells[col],type);return (x<y?-1:x>y?1:0)*(asc?1:-1);});
      rows.forEach(function(r){body.appendChild(r);});
    });
  });
  var box=document.getElementById('filter');
  if(box){box.addEventListener('input',function(){
    var q=box.value.toLowerCase();
    document.querySelectorAll('table.sortable tbody tr').forEach(function(r){
      r.classList.toggle('hidden',q!==''&&r.textContent.toLowerCase().indexOf(q)<0);});
  });}
})();
"""
