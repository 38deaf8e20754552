/* ipywidgets 8 typesets widget labels through MathJax 2's `MathJax.Hub.Queue`; the site runs MathJax 3, which
   has no `Hub`, so without this bridge every widget label throws a page error. The bridge forwards the calls to
   MathJax 3's `typesetPromise` once MathJax has started. It runs after Sphinx's inline `window.MathJax = {...}`
   configuration and before the (deferred) MathJax script; on pages without math it does nothing. */
(function () {
  "use strict";
  var config = window.MathJax;
  if (!config || config.version) {
    return;
  }
  var waiting = [];
  function typeset(element) {
    var mathjax = window.MathJax;
    if (mathjax && mathjax.typesetPromise && mathjax.startup && mathjax.startup.promise) {
      mathjax.startup.promise.then(function () {
        return mathjax.typesetPromise(element ? [element] : undefined);
      });
    } else {
      waiting.push(element);
    }
  }
  var hub = {
    Queue: function () {
      for (var i = 0; i < arguments.length; i++) {
        var job = arguments[i];
        typeset(Array.isArray(job) ? job[2] : undefined);
      }
    }
  };
  config.Hub = hub;
  config.startup = config.startup || {};
  var ready = config.startup.ready;
  config.startup.ready = function () {
    if (ready) {
      ready();
    } else {
      window.MathJax.startup.defaultReady();
    }
    window.MathJax.Hub = hub;
    waiting.splice(0).forEach(typeset);
  };
})();
