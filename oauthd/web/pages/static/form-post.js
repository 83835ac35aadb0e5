// Posts the form_post answer to the client as soon as the page loads; the
// page's button does the same where scripts do not run.
document.getElementById("form-post").submit();
